"""Keys and tokens for crates/midge/tests/jwt.rs, made with PyJWT (and the keys openssl wrote).

  python3 mint.py jwks RSA_PUBLIC_PEM EC_PUBLIC_PEM          -> a JWKS with both keys (kid rsa, ec)
  python3 mint.py token ALG KEY_FILE_OR_SECRET CLAIMS_JSON   -> a token; CLAIMS_JSON may use
                                                                "exp": "+60" for now + 60 s
"""
import json
import sys
import time

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def claims(text):
    now = int(time.time())
    values = json.loads(text)
    for key in ("exp", "nbf", "iat"):
        if isinstance(values.get(key), str):
            values[key] = now + int(values[key])
    return values


def main():
    if sys.argv[1] == "jwks":
        with open(sys.argv[2], "rb") as rsa, open(sys.argv[3], "rb") as ec:
            rsa_jwk = json.loads(RSAAlgorithm.to_jwk(RSAAlgorithm(RSAAlgorithm.SHA256).prepare_key(rsa.read())))
            ec_jwk = json.loads(ECAlgorithm.to_jwk(ECAlgorithm(ECAlgorithm.SHA256).prepare_key(ec.read())))
        rsa_jwk.update(kid="rsa", alg="RS256", use="sig")
        ec_jwk.update(kid="ec", alg="ES256", use="sig")
        print(json.dumps({"keys": [rsa_jwk, ec_jwk]}))
        return
    _, _, alg, key, text = sys.argv
    kid = {"RS256": "rsa", "ES256": "ec"}.get(alg)
    if alg != "HS256":
        with open(key, "rb") as file:
            key = file.read()
    headers = {"kid": kid} if kid else None
    print(jwt.encode(claims(text), key, algorithm=alg, headers=headers))


main()
