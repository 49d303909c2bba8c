"""What every inference class holds: the run's config, its tokenizer, the
checkpoint step, and the model's structure (state.ModelState) and parameters."""


class Loaded:

  def __init__(self, config, model_state, params, tokenizer, step=None):
    self.config, self.tokenizer, self.step = config, tokenizer, step
    self._ms, self.params = model_state, params
