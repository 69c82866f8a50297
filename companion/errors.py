"""Domain errors; the API maps each to one HTTP status with the message as the detail."""


class DomainError(Exception):
    status = 400


class NotFound(DomainError):
    """Also used for 'not a member': a group's existence is not revealed to outsiders."""

    status = 404


class Forbidden(DomainError):
    status = 403


class Conflict(DomainError):
    status = 409


class Invalid(DomainError):
    status = 422
