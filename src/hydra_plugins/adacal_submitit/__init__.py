"""adacal's submitit launchers: sweeps that survive killed jobs (see :mod:`.launcher`).

Hydra finds this package through the ``hydra_plugins`` namespace (``src/`` is on the path of
the editable install) and :mod:`.config` registers the launcher configs the presets under
``conf/hydra/launcher/`` build on.
"""
