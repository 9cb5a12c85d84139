"""Generative optimal transport: monotone gradient networks (C-MGN, M-MGN), their losses,
Gaussian ground truth, and the five benchmark tasks of the `generative` stages."""
