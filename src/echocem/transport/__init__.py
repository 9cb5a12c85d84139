"""Transport maps judged where the truth is known: the continuous W2 benchmark of Korotin et al.
(NeurIPS 2021), Mix3 -> Mix10, D = 2 ... 128 (arrays in third_party/w2bench).

benchmark   the pair: T* from the arrays, samplers of P and Q = T*#P
metrics     L2-UVP and the cosine against T*
linear      the Bures map fitted to the samples' moments
entropic    the entropic (Sinkhorn) barycentric map, geomloss
semidual    the training objective: semi-dual with an exact conjugate (damped Newton)
fit_mgn     C-MGN / M-MGN (echocem.generative.mgn) trained on it
icnn        the ICNN solver on the same objective
experiment  one D end to end: every solver, every seed, scored
maps        the map file format, `python -m echocem transport-map apply`
table, figures   the report's table and L2-UVP-vs-D figure from the stages' metrics
"""
