package textkit

import "fmt"

func Slug(title string) string {
	// ruleid: chum.go.println-outside-main
	fmt.Println("slugging", title)
	return title
}

func Describe(title string) string {
	// ok: chum.go.println-outside-main
	return fmt.Sprintf("title %q", title)
}
