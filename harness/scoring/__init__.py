"""Scoring: PSNR/SSIM under a protocol, extra metrics and their weights, efficiency, and evaluation.

May import harness.settings, harness.data and the zoo; knows nothing of Ray or MLflow.
"""
