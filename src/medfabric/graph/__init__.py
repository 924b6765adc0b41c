"""The medical fact graph (医学事实图谱): clinical events as nodes, relations as edges,
attributes from forms and EMR text, images as URLs; timelines and cohort queries.

Built by issue 9. May use: warehouse, standards.
"""
