package spec

// For the external tests (engine_test.go is package spec_test: it imports
// pkg/model, which imports this package) the chi-square helper and its
// significance level.
var TwoSamplePValue = twoSamplePValue

const Alpha = alpha
