"""Tryton 8.2 (ERP sale.sale, MES production, WMS stock.shipment.out): the JSON-RPC connector and its sandbox twin
(`sandbox.TrytonTwin`)."""
