job "zero-rate-knobs" {
  output_dir = "   "
  model "target" {
    path = "/models/target"
  }
  dataset "synthetic" {}
  load {
    duration   = 0
    burstiness = 0
  }
  modes {
    speculative = false
  }
}
