"""The pure rules of clawguard: no I/O, no SQL, no HTTP; engines and services call them."""
