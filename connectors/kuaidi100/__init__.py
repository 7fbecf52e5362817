"""The Kuaidi100 (快递100) courier connector type: parcel subscriptions, signed form pushes, the real-time query.

Modules: `wire` the vendor's formats and recipes; `notice` a track as the hub's record; `push` the callback's
signature, body and acknowledgement; `connector` the HTTP client; `plugin` the type's declaration; `twin` a
sandbox emulator for tests, benches and the demo (never imported by the others).
"""
