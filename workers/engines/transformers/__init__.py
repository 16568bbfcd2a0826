"""The ``transformers`` engine: the harness runs the transformers model itself (the default).

- ``engine``   ``TransformersEngine``: load (``workers.builds.load``), route, the LM and probe steps
- ``routing``  ``apply_routing``: a strategy installed in the model's router modules (``workers.routing.apply``)
- ``lm``       ``HarnessLM``: lm-eval's ``LM`` with the harness's own request packing
- ``steps``    ``TransformersProbeContext``: prefill and decode loops around ``model.forward``
"""
