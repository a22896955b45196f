package markup

import (
	"fmt"
	"html/template"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yuin/goldmark"
	gmhtml "github.com/yuin/goldmark/renderer/html"
)

const rel = ` rel="noopener noreferrer nofollow"`

// TestHTML is what a chat message may contain and what it becomes.
func TestHTML(t *testing.T) {
	r := New()
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "hello", "<p>hello</p>"},
		{"emphasis", "*em* _em_", "<p><em>em</em> <em>em</em></p>"},
		{"strong", "**st** __st__", "<p><strong>st</strong> <strong>st</strong></p>"},
		{"strikethrough", "~~gone~~", "<p><del>gone</del></p>"},
		{"inline code", "run `a < b && c`", "<p>run <code>a &lt; b &amp;&amp; c</code></p>"},
		{"fenced code", "```go\nif a < b {\n}\n```", "<pre><code>if a &lt; b {\n}\n</code></pre>"},
		{"indented code", "    x := 1", "<pre><code>x := 1\n</code></pre>"},
		{"quote", "> said\n> more", "<blockquote>\n<p>said<br>\nmore</p>\n</blockquote>"},
		{"list", "- a\n- b", "<ul>\n<li>a</li>\n<li>b</li>\n</ul>"},
		{"ordered list", "3. a\n4. b", "<ol start=\"3\">\n<li>a</li>\n<li>b</li>\n</ol>"},
		{"line break", "one\ntwo", "<p>one<br>\ntwo</p>"},
		{"paragraphs", "one\n\ntwo", "<p>one</p>\n<p>two</p>"},
		{"link", "[go](https://go.dev/doc)", `<p><a href="https://go.dev/doc"` + rel + `>go</a></p>`},
		{"http link", "[x](http://example.com)", `<p><a href="http://example.com"` + rel + `>x</a></p>`},
		{"mailto link", "[me](mailto:me@example.com)", `<p><a href="mailto:me@example.com"` + rel + `>me</a></p>`},
		{"autolink", "<https://example.com>", `<p><a href="https://example.com"` + rel + `>https://example.com</a></p>`},
		{"linkify url", "see https://example.com/a?b=1&c=2.", `<p>see <a href="https://example.com/a?b=1&amp;c=2"` + rel + `>https://example.com/a?b=1&amp;c=2</a>.</p>`},
		{"linkify www", "www.example.com", `<p><a href="http://www.example.com"` + rel + `>www.example.com</a></p>`},
		{"linkify email", "mail a@example.com", `<p>mail <a href="mailto:a@example.com"` + rel + `>a@example.com</a></p>`},
		{"linkify ftp: not a link", "ftp://example.com/x", "<p>ftp://example.com/x</p>"},
		{"javascript: link dropped", "[x](javascript:alert(1))", "<p>x</p>"},
		{"javascript: mixed case", "[x](JaVaScRiPt:alert(1))", "<p>x</p>"},
		{"javascript: entity-encoded", "[x](&#106;avascript:alert(1))", "<p>x</p>"},
		{"javascript: autolink", "<javascript:alert(1)>", "<p>javascript:alert(1)</p>"},
		{"data: link dropped", "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)", "<p>x</p>"},
		{"vbscript: link dropped", "[x](vbscript:msgbox(1))", "<p>x</p>"},
		{"relative link dropped", "[x](/logout)", "<p>x</p>"},
		{"reference link", "[x][1]\n\n[1]: javascript:alert(1)", "<p>x</p>"},
		{"link title kept out", `[x](https://e.com "t\" onmouseover=\"alert(1)")`, `<p><a href="https://e.com"` + rel + `>x</a></p>`},
		{"raw html escaped", "<b>hi</b>", "<p>&lt;b&gt;hi&lt;/b&gt;</p>"},
		{"script escaped", "<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"},
		{"html block escaped", "<div onclick=\"x()\">\nhi\n</div>", "<p>&lt;div onclick=&#34;x()&#34;&gt;<br>\nhi<br>\n&lt;/div&gt;</p>"},
		{"img escaped", "<img src=x onerror=alert(1)>", "<p>&lt;img src=x onerror=alert(1)&gt;</p>"},
		{"comment escaped", "<!-- x -->", "<p>&lt;!-- x --&gt;</p>"},
		{"entities kept as text", "&lt;b&gt; &amp; &copy;", "<p>&lt;b&gt; &amp; ©</p>"},
		{"image is its description", "![a *cat*](https://e.com/cat.png)", "<p>a <em>cat</em></p>"},
		{"no heading", "# not a heading", "<p># not a heading</p>"},
		{"no setext heading", "title\n===", "<p>title<br>\n===</p>"},
		{"no thematic break", "---", "<p>---</p>"},
		{"nesting up to 16", "> > x", "<blockquote>\n<blockquote>\n<p>x</p>\n</blockquote>\n</blockquote>"},
		{"nesting over 16 is text", strings.Repeat("> ", 17) + "*x*", "<p>" + strings.Repeat("&gt; ", 17) + "*x*</p>"},
		{"no table", "a | b\n--|--\n1 | 2", "<p>a | b<br>\n--|--<br>\n1 | 2</p>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(r.HTML(tc.in)); got != tc.want {
				t.Errorf("HTML(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestPolicy checks the second layer by itself, on HTML that the Markdown
// layer never makes: should that layer ever let markup through, this is
// what the page would get.
func TestPolicy(t *testing.T) {
	p := newPolicy()
	for _, tc := range []struct{ in, want string }{
		{`<script>alert(1)</script>x`, `x`},
		{`<img src=x onerror=alert(1)>`, ``},
		{`<h1>big</h1>`, `big`},
		{`<table><tr><td>c</td></tr></table>`, `c`},
		{`<p onclick="alert(1)" style="x" class="y">t</p>`, `<p>t</p>`},
		{`<a href="javascript:alert(1)">x</a>`, `x`},
		{`<a href="data:text/html,x">x</a>`, `x`},
		{`<a href="vbscript:msgbox(1)">x</a>`, `x`},
		{`<a href="/logout">x</a>`, `x`},
		{`<a href="https://e.com" target="_blank" onclick="x()">x</a>`, `<a href="https://e.com" rel="nofollow noreferrer">x</a>`},
		{`<a href="https://e.com" rel="opener">x</a>`, `<a href="https://e.com" rel="nofollow noreferrer">x</a>`},
		{`<a href="https://e.com"` + rel + `>x</a>`, `<a href="https://e.com"` + rel + `>x</a>`},
		{`<ol start="2" type="a"><li>x</li></ol>`, `<ol start="2"><li>x</li></ol>`},
		{`<iframe src="https://e.com"></iframe><svg onload=alert(1)>`, ``},
		{`<pre><code class="language-js">x</code></pre>`, `<pre><code>x</code></pre>`},
	} {
		if got := p.Sanitize(tc.in); got != tc.want {
			t.Errorf("Sanitize(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

// TestSecondLayer: what the Markdown layer lets through, HTML applies the
// policy to (here a goldmark that passes raw HTML and dangerous links).
func TestSecondLayer(t *testing.T) {
	r := New()
	r.md = goldmark.New(goldmark.WithRendererOptions(gmhtml.WithUnsafe()))
	in := "<img src=x onerror=alert(1)><script>alert(1)</script>[x](javascript:alert(1)) <b onclick=alert(1)>b</b>"
	if got, want := string(r.HTML(in)), "<p>x b</p>"; got != want {
		t.Errorf("HTML(%q) through an unsafe Markdown\n got %q\nwant %q", in, got, want)
	}
}

// TestHTMLNeverEmpty: a text that renders to nothing is shown as itself.
func TestHTMLNeverEmpty(t *testing.T) {
	for _, in := range []string{"![](https://e.com/x.png)", "[1]: https://e.com"} {
		if got := New().HTML(in); !strings.HasPrefix(string(got), "<p>") {
			t.Errorf("HTML(%q) = %q, want the text as a paragraph", in, got)
		}
	}
	long := strings.Repeat("*a* <b>", MaxInput/7+1)
	if got := string(New().HTML(long)); strings.Contains(got, "<em>") || strings.Contains(got, "<b>") {
		t.Errorf("text over MaxInput is rendered as Markdown or unescaped: %.80q…", got)
	}
}

// worstCases are texts of the longest accepted size (2,000 characters)
// built to be slow to parse or to sanitise.
func worstCases() map[string]string {
	const n = 2000
	fill := func(unit string) string { return strings.Repeat(unit, n/len(unit)) }
	return map[string]string{
		"nested quotes":   fill(">"),
		"nested lists":    fill("- "),
		"nested brackets": fill("["),
		"link openers":    fill("[a]("),
		"emphasis":        fill("*_"),
		"unclosed stars":  fill("**a"),
		"backticks":       fill("`"),
		"backtick runs":   fill("`` ` "),
		"fences":          fill("```\n"),
		"many links":      fill("https://e.co "),
		"many emails":     fill("a@e.co "),
		"written links":   fill("[a](http://e.co) "),
		"entities":        fill("&amp;"),
		"angle brackets":  fill("<a "),
		"line breaks":     fill("a\n"),
	}
}

// TestCache: a text rendered again is the same HTML; the cache stays
// bounded.
func TestCache(t *testing.T) {
	r := New()
	for i := range 3 * cacheSize {
		in := fmt.Sprintf("*%d*", i)
		want := template.HTML(fmt.Sprintf("<p><em>%d</em></p>", i))
		if got := r.HTML(in); got != want {
			t.Fatalf("HTML(%q) = %q, want %q", in, got, want)
		}
		if got := r.HTML(in); got != want {
			t.Fatalf("HTML(%q) again = %q, want %q", in, got, want)
		}
	}
	if n := len(r.cache); n > cacheSize {
		t.Errorf("cache holds %d renderings, want at most %d", n, cacheSize)
	}
}

// TestWorstCasesBounded: no 2,000-character message takes long to render.
func TestWorstCasesBounded(t *testing.T) {
	r := New()
	for name, in := range worstCases() {
		start := time.Now()
		r.render(in)
		if d := time.Since(start); d > 250*time.Millisecond {
			t.Errorf("%s: rendering took %v", name, d)
		}
	}
}

func BenchmarkHTML(b *testing.B) {
	r := New()
	cases := worstCases()
	cases["typical"] = "see **this**: https://go.dev/doc and `go test`\n> quoted"
	for name, in := range cases {
		b.Run(strings.ReplaceAll(name, " ", "-"), func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				r.render(in) // not HTML: its cache would answer
			}
		})
	}
}

// TestConcurrent: one Renderer serves every stream's goroutine (-race).
func TestConcurrent(t *testing.T) {
	r := New()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				in := fmt.Sprintf("**%d**", (g*7+i)%(cacheSize+50))
				if got := string(r.HTML(in)); !strings.HasPrefix(got, "<p><strong>") {
					t.Errorf("HTML(%q) = %q", in, got)
					return
				}
			}
		})
	}
	wg.Wait()
}
