# Valid, with two settings that have no effect.
job "warnings" {
  model "target" {
    path = "/models/target"
    gpus = 2
  }
  model "drafter" {
    path = "/models/drafter"
  }
  placement {
    strategy = "same"
  }
  dataset "synthetic" {}
  modes {
    speculative = false
  }
}
