"""FHIR R4 and OMOP CDM v5.4 exports.

Built by issues 7 and 9. May use: warehouse, graph.
"""
