"""The web app: server-rendered pages for the facilitator, the client and the consultants.

Pages read through the same services and access rules as the API; changes go to the API
itself (with the session cookie and the page's CSRF token), so there is one source of truth.
"""
