"""Generated ultrasonic patches for the segmentation (issue 12).

A mask-conditioned generative model p(image | mask) of 160 x 272 patches
(rectified flow with an smp U-Net velocity field and classifier-free
guidance), physically plausible mask proposals, its judging (Sinkhorn
divergences of patch descriptors, faithfulness IoU of the first U-Net), the
mixing of generated pairs into U-Net training, and the augmentation study.
"""
