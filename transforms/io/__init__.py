"""The pipeline's I/O edges: the Kafka source (``kafka_source``) and its offset commits
(``commit``), the live-transcript Kafka sink (``kafka_sink``), the Parquet tables
(``parquet_sink``), recordings on disk as the batch job's source (``recordings``), and what
they share (``kafka_client``, ``durable``). Imports schemas and transforms.core, never a stage."""
