"""DataGate: stops the pipeline on data anomalies, before Transform and Trainer."""
from components.data_gate.component import DataGate, DataValidationError, check

__all__ = ["DataGate", "DataValidationError", "check"]
