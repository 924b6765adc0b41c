"""The FastAPI application: one router per domain, FHIR façade, data-service platform,
metrics. Holds no domain logic.

Built by issue 7. May use: every package above, only through their public functions.
"""
