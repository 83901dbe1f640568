job "burstiness" {
  model "target" {
    path = "/models/target"
  }
  model "drafter" {
    path = "/models/drafter"
  }
  dataset "synthetic" {}
  load {
    rate       = 4
    duration   = -5
    burstiness = 2
  }
}
