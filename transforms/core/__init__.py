"""The domain core: pure functions and records-in, records-out logic with no Beam import
(enforced by import-linter). The per-call fold (``calls``), the QA metrics (``qa_metrics``),
scorecards (``scorecard``, with the packaged ``scorecards/default.yaml``), text analytics
(``text_analytics``: PII redaction, keywords, sentiment) and where speech is cut into utterances
(``segmentation``). The streaming job, the batch job and the tests share them; the stages in
``transforms/`` call them from thin DoFns."""
