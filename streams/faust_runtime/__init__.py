"""The worker's Kafka runtime on faust-streaming 0.15.3 and aiokafka 0.14.0: everything that knows
faust is in this package, behind streams/runtime.py's interface.

- app.py: the faust app, its agent loop, timers and rebalance callbacks (`build_app`);
- runtime.py: `FaustRuntime`, the interface's operations on faust's consumer, producer and table;
- compat.py: the version-guarded patches of faust and aiokafka (tests/test_compat.py);
- inbox.py: the consumer hands the agent's records to an inbox taken in batches;
- sensors.py, connection.py: faust's Prometheus sensors and connection settings.
"""
