# Only what has no default; everything else comes from the seed's defaults.
job "minimal" {
  model "target" {
    path = "/models/target"
  }
  model "drafter" {
    path = "/models/drafter"
  }
  dataset "synthetic" {}
}
