package report

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// ProgressOptions configure a Progress.
type ProgressOptions struct {
	// Writer receives the bar or the lines (usually stderr).
	Writer io.Writer
	// IsTerminal selects the bar (true) or plain lines (false, for logs and pipes).
	IsTerminal bool
	// Label starts every line, e.g. "speculative".
	Label string
	// EveryPercent is the step between plain lines; default 10.
	EveryPercent int
	// EveryCount is the step between plain lines when the total is unknown; default 10.
	EveryCount int
	// Now is the clock for elapsed time and ETA in plain lines; default time.Now.
	Now func() time.Time
}

// Progress reports finished requests while a mode runs: on a terminal a bar with counts and
// ETA, otherwise a plain line every EveryPercent. Safe for concurrent use.
type Progress struct {
	mu       sync.Mutex
	opts     ProgressOptions
	total    int
	done     int
	failed   int
	start    time.Time
	nextLine int // plain: the done count at which the next line is due
	lastLine int // plain: the done count of the last line written
	bar      *progressbar.ProgressBar
	closed   bool
}

// NewProgress starts reporting progress towards total requests; total ≤ 0 means unknown (rate
// mode with a duration), shown as a spinner or a line every EveryCount requests.
func NewProgress(total int, opts ProgressOptions) *Progress {
	if opts.Writer == nil {
		opts.Writer = io.Discard
	}
	if opts.EveryPercent <= 0 || opts.EveryPercent > 100 {
		opts.EveryPercent = 10
	}
	if opts.EveryCount <= 0 {
		opts.EveryCount = 10
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Progress{opts: opts, total: max(total, 0), start: opts.Now(), lastLine: -1}
	p.nextLine = p.step(0)
	if opts.IsTerminal {
		barMax := total
		if barMax <= 0 {
			barMax = -1 // progressbar's spinner for an unknown length
		}
		p.bar = progressbar.NewOptions(barMax,
			progressbar.OptionSetWriter(opts.Writer),
			progressbar.OptionSetDescription(opts.Label),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(opts.Writer) }),
		)
	}
	return p
}

// step returns the done count at which the line after done is due.
func (p *Progress) step(done int) int {
	if p.total == 0 {
		return (done/p.opts.EveryCount + 1) * p.opts.EveryCount
	}
	// the smallest count whose percentage reaches the next multiple of EveryPercent
	nextPct := (done*100/p.total/p.opts.EveryPercent + 1) * p.opts.EveryPercent
	return min((nextPct*p.total+99)/100, p.total)
}

// Done records one finished request.
func (p *Progress) Done(failed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.done++
	if failed {
		p.failed++
	}
	if p.bar != nil {
		if failed {
			p.bar.Describe(fmt.Sprintf("%s (%d failed)", p.opts.Label, p.failed))
		}
		_ = p.bar.Add(1) // a display error must not stop the benchmark
		return
	}
	if p.done >= p.nextLine {
		p.writeLine()
		p.nextLine = p.step(p.done)
	}
}

// Close ends the display: the bar gets its line break, and plain output its final line if the
// last request did not already print one.
func (p *Progress) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	switch {
	case p.bar != nil && p.bar.IsFinished():
	case p.bar != nil && p.total == 0:
		// Finish, not Exit: only a finished spinner stops its render goroutine.
		_ = p.bar.Finish()
	case p.bar != nil:
		// Exit leaves the bar where the run stopped instead of filling it.
		_ = p.bar.Exit()
		fmt.Fprintln(p.opts.Writer)
	case p.lastLine != p.done:
		p.writeLine()
	}
}

func (p *Progress) writeLine() {
	p.lastLine = p.done
	elapsed := p.opts.Now().Sub(p.start)
	line := fmt.Sprintf("%s: %d", p.opts.Label, p.done)
	if p.total > 0 {
		line += fmt.Sprintf("/%d requests (%d%%)", p.total, p.done*100/p.total)
	} else {
		line += " requests"
	}
	line += fmt.Sprintf(", %d failed, elapsed %s", p.failed, elapsed.Round(time.Second))
	if p.total > 0 && p.done > 0 && p.done < p.total {
		eta := time.Duration(float64(elapsed) / float64(p.done) * float64(p.total-p.done))
		line += fmt.Sprintf(", eta %s", eta.Round(time.Second))
	}
	fmt.Fprintln(p.opts.Writer, line)
}
