"""ModelCard: the candidate model with ``assets.extra/model_card.md``, pushed as is."""
