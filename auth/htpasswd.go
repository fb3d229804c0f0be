package auth

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// parseHtpasswd reads "user:hash" lines (blank lines and lines starting with
// '#' are skipped) and returns user → bcrypt hash. Errors name the line
// number only.
func parseHtpasswd(r io.Reader) (map[string][]byte, error) {
	users := make(map[string][]byte)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok || user == "" || hash == "" {
			return nil, fmt.Errorf("%w (line %d)", ErrHtpasswdSyntax, line)
		}
		if !isBcrypt(hash) {
			return nil, fmt.Errorf("%w (line %d)", ErrHtpasswdNotBcrypt, line)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("%w (line %d)", ErrHtpasswdDuplicate, line)
		}
		users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		// bufio's errors (e.g. "token too long") hold no line content.
		return nil, fmt.Errorf("proxyto: auth: htpasswd: after line %d: %w", line, err)
	}
	if len(users) == 0 {
		return nil, ErrHtpasswdEmpty
	}
	return users, nil
}

// isBcrypt reports whether hash is a well-formed bcrypt hash with one of the
// prefixes htpasswd -B and other tools write.
func isBcrypt(hash string) bool {
	if !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") && !strings.HasPrefix(hash, "$2y$") {
		return false
	}
	_, err := bcrypt.Cost([]byte(hash))
	return err == nil && len(hash) == 60
}
