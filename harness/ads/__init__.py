"""ADS (seed 002) as a multi-stage pipeline: unified model, FAIG-SD masks, classifier, CNN-ADS.

Built on harness.runs (submit, trials, tracking); only the CLI imports it.
"""
