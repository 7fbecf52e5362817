"""`tickethub demo`: the hub as deployed (`tickethub up` on the embedded default, real processes) between the
sandbox twins of a CRM, an ERP, an MES, a WMS and Kuaidi100, each on its own loopback port, and a scripted day
played through them with a live display.

Not part of the hub: the hub finds this command through the `tickethub.commands` entry point group, as it finds
connector types, and nothing in the hub imports it. It may use the connectors' twins, which production code
never does.
"""
