"""From a trained head to a quantum computer: export, device targets, resources, backend runs.

``python -m hqc.export --help`` lists the commands (see README "Export and hardware").
"""
