"""Identity: who a browser or a forge account is, and what they may do on a repository.

``oauth`` runs the OAuth2 authorization-code flow with PKCE against GitHub, Gitea and GitLab;
``admission`` decides who may log in (closed registration, ``BASTION_USER_FILTER``,
``BASTION_ADMINS``, minimum account age); ``sessions`` holds browser sessions and their CSRF
tokens; ``local_login`` the one-time login links of the local forge; ``permissions`` the
repository rule, the forge mirror and activation. The routes are in ``server/api/login.py``.
"""
