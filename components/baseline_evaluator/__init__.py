"""BaselineEvaluator: TFX's Evaluator, whose baseline must be this pipeline's model of the
same task."""
