"""Reading the operating system's keyring.

``keyring`` is imported when a secret is resolved, not when the plugin loads, so ``etl plugins``
and ``etl validate`` stay fast.
"""

from __future__ import annotations

from etl_core import SecretError


def get_password(service: str, username: str, where: str) -> str | None:
    """The password stored for ``service`` and ``username``, or ``None``; a keyring that
    cannot answer raises a SecretError naming ``where``."""
    import keyring
    from keyring.errors import KeyringError, NoKeyringError

    try:
        return keyring.get_password(service, username)
    except NoKeyringError:
        raise SecretError(
            f"{where}: no keyring backend is available on this machine; on a server without "
            "a desktop keyring use the `file` or `vault` provider, or choose a backend with "
            "PYTHON_KEYRING_BACKEND"
        ) from None
    except KeyringError as exc:
        backend = type(keyring.get_keyring()).__name__
        raise SecretError(
            f"{where}: the keyring backend {backend} failed ({type(exc).__name__}); "
            "is the keyring unlocked?"
        ) from None
    except EOFError:  # an encrypted file keyring asking for its master password, headless
        backend = type(keyring.get_keyring()).__name__
        raise SecretError(
            f"{where}: the keyring backend {backend} asks for a password on the terminal, "
            "which this run does not have; choose another backend with PYTHON_KEYRING_BACKEND"
        ) from None
