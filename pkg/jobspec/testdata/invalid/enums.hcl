job "enums" {
  model "target" {
    path  = "/models/target"
    dtype = "fp8"
  }
  model "drafter" {
    path = "/models/drafter"
  }
  placement {
    strategy = "ratio"
  }
  dataset "csv" {
    file = "prompts.csv"
  }
  load {
    rate    = 1
    arrival = "uniform"
  }
}
