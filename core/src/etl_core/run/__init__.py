"""The run: the one place that turns a plan into Spark actions (DESIGN §4).

:mod:`~etl_core.run.runner` orders the steps; :mod:`~etl_core.run.live` holds the state of a
live run; :mod:`~etl_core.run.build` builds its datasets; :mod:`~etl_core.run.commit` stages,
checks, publishes or discards; :mod:`~etl_core.run.gate` is the quality gate and
:mod:`~etl_core.run.replay` the dead letters fed back in, both given the live run as an
argument; :mod:`~etl_core.run.resilience`, :mod:`~etl_core.run.credentials`,
:mod:`~etl_core.run.tracing`, :mod:`~etl_core.run.observers` and :mod:`~etl_core.run.locks`
serve them; :mod:`~etl_core.run.engine` starts Spark.
"""
