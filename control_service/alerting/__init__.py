"""Alert rules evaluated on committed readings: conditions, the evaluator, notifications."""
