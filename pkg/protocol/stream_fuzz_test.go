package protocol

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// FuzzAssembleStream feeds one assembler the chunks of two real frames as a
// broken network or a hostile peer would: reordered, repeated, dropped,
// corrupted, with wrong chunk numbers. It never panics, a frame it completes
// has the shape its headers promised, the bytes it holds stay within
// MaxBytes, and once the TTL has passed it holds nothing.
func FuzzAssembleStream(f *testing.F) {
	var pool []*nats.Msg
	for i, shape := range [][]int{{4, 8}, {16, 16}} {
		n, _ := elements(shape)
		msgs, err := Split("s", "session-"+string(rune('a'+i)), []byte(`{"v":1,"op":"decode"}`),
			&Tensor{Shape: shape, Data: make([]float32, n)}, 300)
		if err != nil {
			f.Fatal(err)
		}
		pool = append(pool, msgs...)
	}
	in := make([]byte, 0, 2*len(pool))
	for i := range pool { // every chunk in order, untouched
		in = append(in, byte(i), 0)
	}
	f.Add(in)
	f.Add([]byte{1, 0, 0, 0, 0, 1, 2, 2, 3, 3, 4, 5})
	const maxBytes = 1 << 12
	f.Fuzz(func(t *testing.T, ops []byte) {
		now := time.Unix(1000, 0)
		a := NewAssembler(AssemblerOptions{MaxBytes: maxBytes, TTL: time.Minute, Now: func() time.Time { return now }})
		for i := 0; i+1 < len(ops); i += 2 {
			m := mutate(pool[int(ops[i])%len(pool)], ops[i+1])
			fr, err := a.Add(m)
			if err == nil && fr != nil && fr.Tensor != nil {
				if n, err := elements(fr.Tensor.Shape); err != nil || n != len(fr.Tensor.Data) {
					t.Fatalf("a frame of shape %v holds %d values", fr.Tensor.Shape, len(fr.Tensor.Data))
				}
			}
			a.mu.Lock()
			held := a.bytes
			a.mu.Unlock()
			if held < 0 || held > maxBytes {
				t.Fatalf("the assembler holds %d bytes, bound %d", held, maxBytes)
			}
		}
		now = now.Add(2 * time.Minute)
		a.mu.Lock()
		a.expire()
		held, pending := a.bytes, len(a.pending)
		a.mu.Unlock()
		if held != 0 || pending != 0 {
			t.Fatalf("after the TTL: %d bytes in %d frames still held", held, pending)
		}
	})
}

// mutate returns a copy of m changed as op says.
func mutate(m *nats.Msg, op byte) *nats.Msg {
	c := nats.NewMsg(m.Subject)
	for k, v := range m.Header {
		c.Header[k] = append([]string(nil), v...)
	}
	c.Data = append([]byte(nil), m.Data...)
	arg := int(op >> 3)
	switch op % 8 {
	case 1: // a corrupted byte
		if len(c.Data) > 0 {
			c.Data[arg%len(c.Data)] ^= 0xff
		}
	case 2: // cut short
		c.Data = c.Data[:arg%(len(c.Data)+1)]
	case 3: // another chunk number
		c.Header.Set(HeaderChunk, string(rune('0'+arg%10)))
	case 4: // another chunk count
		c.Header.Set(HeaderChunks, string(rune('0'+arg%10)))
	case 5: // another frame
		c.Header.Set(HeaderFrame, string(rune('a'+arg%3)))
	case 6: // a lie about the size
		c.Header.Set(HeaderBytes, string(rune('0'+arg%10))+"000")
	}
	return c
}
