"""Segmentation of EchoCem patches: metric, baselines, networks, clean-up, submission.

Modules: `metric` (challenge IoU), `features` + `rf` (Random Forest baseline),
`rules` (rule-based clean-up), `submission` (challenge CSV and its validator);
the U-Net side lives in `unet`, `train`, `augment` and `postproc`.
"""
