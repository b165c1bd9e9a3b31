"""Who is calling, and whether they may: credentials, roles, scopes, the rule of each RPC, audit.

The rule for every RPC is declared in the contract (`sensormesh.v1.access`,
proto/sensormesh/v1/access_rule.proto) and enforced by one interceptor,
`AccessInterceptor`, shared by every service.
"""
