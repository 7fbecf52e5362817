"""BottleCRM (PyPI django-crm 1.35): the CRM connector and its sandbox twin (`sandbox.BottleCRMTwin`)."""
