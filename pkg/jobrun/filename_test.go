package jobrun

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestFileName(t *testing.T) {
	long := strings.Repeat("a", 200)
	cases := []struct{ in, want string }{
		{"qwen3-8b-vs-1.7b", "qwen3-8b-vs-1.7b"},
		{"", "_"},
		{"..", "__"},
		{"../../etc/cron.d/x", "___.._etc_cron.d_x"},
		{".hidden", "_hidden"},
		{"a/b\\c", "a_b_c"},
		{"name with spaces\n", "name_with_spaces_"},
		{"日本", "______"},
		{"nul\x00byte", "nul_byte"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			if got := FileName(tc.in); got != tc.want {
				t.Errorf("FileName(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	t.Run("long names stay apart", func(t *testing.T) {
		a, b := FileName(long+"x"), FileName(long+"y")
		if a == b || len(a) > maxFileName || !strings.HasPrefix(a, "aaaa") {
			t.Errorf("%q and %q", a, b)
		}
	})
}

// FuzzFileName: whatever the name, the default output folder is one
// element under results/.
func FuzzFileName(f *testing.F) {
	for _, s := range []string{"job", "..", "../x", "/abs", "a/../../b", ".", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		dir := DefaultOutputDir(name, "0123456789abcdef")
		if filepath.Dir(dir) != "results" || strings.HasPrefix(filepath.Base(dir), ".") {
			t.Fatalf("job name %q gives output folder %q", name, dir)
		}
		if got := FileName(name); FileName(got) != got {
			t.Fatalf("FileName is not idempotent on %q: %q then %q", name, got, FileName(got))
		}
	})
}
