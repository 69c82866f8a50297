"""One gateway for every model call: the on-prem policy, enforced at the socket, and an audit.

`gateway.LLMGateway` makes the calls, `policy.decide` judges an endpoint, `transport` holds the
guarded HTTP client, `audit` the `model_calls` rows, `errors` what a call can fail with. This
package file imports nothing, so reading the audit does not load the model client.
"""
