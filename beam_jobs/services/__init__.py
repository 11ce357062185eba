"""Local services and models: the Kafka broker and the Prism runner, the embedded ASR model,
random-weight models."""
