package textkit

import "errors"

func Parse(s string) (int, error) {
	// ruleid: chum.go.panic-todo
	panic("TODO: parse")
}

func Render(n int) string {
	// ruleid: chum.go.panic-todo
	panic("not implemented")
}

func Check(n int) error {
	if n < 0 {
		// ok: chum.go.panic-todo
		panic(errors.New("negative input is a bug in the caller"))
	}
	return nil
}
