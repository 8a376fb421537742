"""Ablation matrices: designs over config fragments, parallel resumable runs, reports.

``python -m hqc.ablate run ablations/<name>.yaml`` (README "Ablation matrices").
"""
