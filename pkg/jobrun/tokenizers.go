package jobrun

import (
	"github.com/draftbench/draftbench/pkg/jobspec"
	"github.com/draftbench/draftbench/pkg/tokenizer"
)

// LoadTokenizer loads the target's tokenizer and, when the job runs speculative
// decoding, checks that the drafter's is the same one (DESIGN §3: an
// incompatible pair is refused at validation), naming the HCL position of the
// model at fault. The caller closes the returned tokenizer.
func LoadTokenizer(job *jobspec.Job) (*tokenizer.Tokenizer, error) {
	tok, err := tokenizer.Load(job.Models.Target.Path)
	if err != nil {
		return nil, job.Errorf("model.target.path", "target tokenizer: %w", err)
	}
	if job.Modes.Speculative && job.Models.Drafter != nil {
		dt, err := tokenizer.Load(job.Models.Drafter.Path)
		if err != nil {
			tok.Close()
			return nil, job.Errorf("model.drafter.path", "drafter tokenizer: %w", err)
		}
		err = tokenizer.Compatible(tok, dt)
		dt.Close()
		if err != nil {
			tok.Close()
			return nil, job.Errorf("model.drafter.path", "%w", err)
		}
	}
	return tok, nil
}

// CheckTokenizers is LoadTokenizer for callers that only validate.
func CheckTokenizers(job *jobspec.Job) error {
	tok, err := LoadTokenizer(job)
	if err != nil {
		return err
	}
	return tok.Close()
}
