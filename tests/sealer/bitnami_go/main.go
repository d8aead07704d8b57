// An independent Go implementation of the Bitnami Sealed Secrets item format
// (standard library only), used by tests/sealer/test_bitnami_compat.py.
//
//	bitnami seal CERT.pem LABEL   < plaintext  > base64 item
//	bitnami open KEY.pem  LABEL   < base64 item > plaintext
package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func seal(pub *rsa.PublicKey, plaintext, label []byte) ([]byte, error) {
	sessionKey := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, sessionKey); err != nil {
		return nil, err
	}
	rsaCiphertext, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, sessionKey, label)
	if err != nil {
		return nil, err
	}
	aed, err := gcm(sessionKey)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 2, 2+len(rsaCiphertext)+len(plaintext)+aed.Overhead())
	binary.BigEndian.PutUint16(out, uint16(len(rsaCiphertext)))
	out = append(out, rsaCiphertext...)
	zeroNonce := make([]byte, aed.NonceSize())
	return aed.Seal(out, zeroNonce, plaintext, nil), nil
}

func open(priv *rsa.PrivateKey, item, label []byte) ([]byte, error) {
	if len(item) < 2 {
		return nil, errors.New("truncated")
	}
	n := int(binary.BigEndian.Uint16(item))
	if len(item) < 2+n {
		return nil, errors.New("truncated")
	}
	sessionKey, err := rsa.DecryptOAEP(sha256.New(), rand.Reader, priv, item[2:2+n], label)
	if err != nil {
		return nil, err
	}
	aed, err := gcm(sessionKey)
	if err != nil {
		return nil, err
	}
	return aed.Open(nil, make([]byte, aed.NonceSize()), item[2+n:], nil)
}

func pemBlock(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	return block.Bytes, nil
}

func run() error {
	if len(os.Args) != 4 {
		return errors.New("usage: bitnami seal|open PEM LABEL")
	}
	der, err := pemBlock(os.Args[2])
	if err != nil {
		return err
	}
	label := []byte(os.Args[3])
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	switch os.Args[1] {
	case "seal":
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		pub, ok := cert.PublicKey.(*rsa.PublicKey)
		if !ok {
			return errors.New("not an RSA certificate")
		}
		item, err := seal(pub, input, label)
		if err != nil {
			return err
		}
		fmt.Print(base64.StdEncoding.EncodeToString(item))
	case "open":
		key, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return err
		}
		priv, ok := key.(*rsa.PrivateKey)
		if !ok {
			return errors.New("not an RSA key")
		}
		item, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(input)))
		if err != nil {
			return err
		}
		plaintext, err := open(priv, item, label)
		if err != nil {
			return err
		}
		os.Stdout.Write(plaintext)
	default:
		return errors.New("usage: bitnami seal|open PEM LABEL")
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bitnami:", err)
		os.Exit(1)
	}
}
