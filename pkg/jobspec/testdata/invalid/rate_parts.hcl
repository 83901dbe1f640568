job "rate-parts" {
  model "target" {
    path = "/models/target"
  }
  model "drafter" {
    path = "/models/drafter"
  }
  dataset "synthetic" {}
  load {
    duration   = "60s"
    burstiness = 2
  }
}
