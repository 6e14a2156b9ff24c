"""podnet's sync worker: mirrors the IPAM's allocations and the cluster's Services into OVN.

The pure core is ``cluster`` (typed views of pods, Services and slices), ``topology``
(the desired OVN state) and ``nb_model``; ``nb`` writes it to the northbound DB,
``worker`` drives full and event steps, ``main`` is ``podnet sync``. See
docs/architecture.md and docs/sync.md.
"""
