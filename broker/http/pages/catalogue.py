"""Every string the gateway's pages show, in each language shipped: English (the source) and French.

Gettext's convention: the English text is the message id, so a page or handler names its string in plain
English and a missing translation falls back to it. ``{name}`` placeholders are filled by ``render.t``
after translation; ``tests/http/test_catalogue.py`` checks that every id the pages and handlers use is here,
in every language, with the same placeholders.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

DEFAULT_LANGUAGE = "en"
LANGUAGES = ("en", "fr")

# French typography puts a no-break space before ":" and "?".
_NB = "\u00a0"

_FRENCH: Mapping[str, str] = MappingProxyType(
    {
        # The pages' own words (templates).
        "Companies:": f"Entreprises{_NB}:",
        "Signing you in": "Connexion en cours",
        "Signing you in…": "Connexion en cours…",
        "Continue": "Continuer",
        "Sign in": "Se connecter",
        "Company login code or work email": "Code de connexion de l'entreprise ou e-mail professionnel",
        "Sign in – {name}": "Connexion – {name}",
        "Sign in to {name}": "Se connecter à {name}",
        "Sign in with Microsoft": "Se connecter avec Microsoft",
        "You will be sent to Microsoft to sign in with your work account.": (
            "Vous allez être redirigé vers Microsoft pour vous connecter avec votre compte professionnel."
        ),
        "Request ID:": f"ID de requête{_NB}:",
        "Details for your administrator": "Détails pour votre administrateur",
        "Error:": f"Erreur{_NB}:",
        "Correlation ID:": f"ID de corrélation{_NB}:",
        "Sign out?": f"Se déconnecter{_NB}?",
        "You are signed in as {who}.": "Vous êtes connecté en tant que {who}.",
        "Signed out": "Déconnecté",
        "You are signed out of this application.": "Vous êtes déconnecté de cette application.",
        "Also sign out of your Microsoft account": "Se déconnecter aussi du compte Microsoft",
        "There is no company with the login code {code}. Check the link your administrator gave you.": (
            "Aucune entreprise n'a le code de connexion {code}. Vérifiez le lien donné par "
            "votre administrateur."
        ),
        "Find your company": "Trouver votre entreprise",
        # Sign-in (handlers/login.py, handlers/callback.py).
        "Please sign in again": "Veuillez vous reconnecter",
        "Your sign-in took too long or this sign-in link was already used. Start again.": (
            "La connexion a pris trop de temps ou ce lien de connexion a déjà servi. Recommencez."
        ),
        "Start again": "Recommencer",
        "Too many groups to sign you in": "Trop de groupes pour vous connecter",
        "Your account belongs to more groups than the sign-in token can carry, and this company's gateway is "
        "set not to look them up. Ask your administrator (gateway setting groups_overage, or assign access "
        "through app roles instead of groups).": (
            "Votre compte appartient à plus de groupes que le jeton de connexion ne peut en contenir, et la "
            "passerelle de cette entreprise est réglée pour ne pas les rechercher. Contactez "
            "votre administrateur "
            "(réglage groups_overage de la passerelle, ou accès par rôles d'application plutôt "
            "que par groupes)."
        ),
        "Try again": "Réessayer",
        "Please start the sign-in in this browser": "Veuillez commencer la connexion dans ce navigateur",
        "This sign-in was started in another browser, so it cannot be completed here. Start again.": (
            "Cette connexion a commencé dans un autre navigateur et ne peut pas se terminer ici. Recommencez."
        ),
        "Company not found": "Entreprise introuvable",
        "This company can no longer sign in here.": "Cette entreprise ne peut plus se connecter ici.",
        "The sign-in answer was incomplete.": "La réponse de connexion était incomplète.",
        "You don't have a role in this application yet": "Vous n'avez pas encore de rôle dans "
        "cette application",
        "You signed in, but your account has no role in this application. Ask your "
        "administrator to assign you "
        "a role (in Entra: Enterprise applications > Users and groups).": (
            "Vous êtes connecté, mais votre compte n'a aucun rôle dans cette application. Demandez à votre "
            "administrateur de vous en attribuer un (dans Entra : Applications d'entreprise > "
            "Utilisateurs et "
            "groupes)."
        ),
        "Sign-in could not be verified": "La connexion n'a pas pu être vérifiée",
        "Microsoft's answer did not pass the gateway's checks, so you were not signed in. If you chose an "
        "account of another company, sign in with your account at this company.": (
            "La réponse de Microsoft n'a pas passé les contrôles de la passerelle : vous n'êtes "
            "pas connecté. "
            "Si vous avez choisi le compte d'une autre entreprise, connectez-vous avec votre compte de cette "
            "entreprise."
        ),
        "Too many sign-in attempts": "Trop de tentatives de connexion",
        "We could not find your company. Check the login code or email your administrator gave you.": (
            "Nous n'avons pas trouvé votre entreprise. Vérifiez le code de connexion ou "
            "l'e-mail donné par votre "
            "administrateur."
        ),
        # Sign-out (handlers/logout.py).
        "You are signed out": "Vous êtes déconnecté",
        "You are signed out of this application and of Microsoft.": (
            "Vous êtes déconnecté de cette application et de Microsoft."
        ),
        "Sign in again": "Se reconnecter",
        "Please confirm again": "Veuillez confirmer à nouveau",
        "This sign-out request could not be verified.": "Cette demande de déconnexion n'a pas "
        "pu être vérifiée.",
        "Sign out": "Se déconnecter",
        # Requests the gateway refuses (handlers/protected.py, handlers/service.py, middleware.py, proxy/).
        "Bad request": "Requête invalide",
        # Forward-auth refusals (handlers/verify.py): the ingress shows them when it passes them through.
        "Access denied": "Accès refusé",
        "Forward-auth answers only the configured ingress (server.trusted_proxies).": (
            "L'authentification déléguée ne répond qu'à l'ingress configuré (server.trusted_proxies)."
        ),
        "The ingress did not describe the original request (X-Original-URL or X-Forwarded-Uri).": (
            "L'ingress n'a pas décrit la requête d'origine (X-Original-URL ou X-Forwarded-Uri)."
        ),
        "This address is not valid (it contains dot segments, backslashes or a spelling the "
        "application could "
        "read as another address).": (
            "Cette adresse n'est pas valide (elle contient des segments « . », des barres "
            "obliques inverses ou "
            "une écriture que l'application pourrait lire comme une autre adresse)."
        ),
        "Sign-in required": "Connexion requise",
        "Sign in to use this application.": "Connectez-vous pour utiliser cette application.",
        "No application here": "Aucune application ici",
        "This address is not served by the gateway.": "Cette adresse n'est pas servie par la passerelle.",
        "WebSockets are not enabled here": "Les WebSockets ne sont pas activés ici",
        "This application is not configured to accept WebSocket connections through the gateway.": (
            "Cette application n'est pas configurée pour accepter des connexions WebSocket via la passerelle."
        ),
        "You don't have access": "Vous n'avez pas accès",
        "Switch account": "Changer de compte",
        "Not found": "Introuvable",
        "There is nothing at this address.": "Il n'y a rien à cette adresse.",
        "Not signed in": "Non connecté",
        "You are not signed in.": "Vous n'êtes pas connecté.",
        "HTTP/1.0 or later is required.": "HTTP/1.0 ou plus récent est requis.",
        "The Host header is not a valid host.": "L'en-tête Host n'est pas un hôte valide.",
        "Service temporarily unavailable": "Service temporairement indisponible",
        "The sign-in service cannot reach its session store right now. Please try again in a moment.": (
            "Le service de connexion ne peut pas joindre son stockage de sessions pour le "
            "moment. Réessayez dans "
            "un instant."
        ),
        "Microsoft sign-in is unreachable": "La connexion Microsoft est injoignable",
        "The gateway cannot reach Microsoft's sign-in service right now. Please try again in a moment.": (
            "La passerelle ne peut pas joindre le service de connexion de Microsoft pour le "
            "moment. Réessayez dans "
            "un instant."
        ),
        "Something went wrong": "Un problème est survenu",
        "The gateway hit an unexpected error. Please try again; if it persists, give the request ID below to "
        "your administrator.": (
            "La passerelle a rencontré une erreur inattendue. Réessayez ; si elle persiste, "
            "donnez l'ID de requête "
            "ci-dessous à votre administrateur."
        ),
        "The upload is too large": "L'envoi est trop volumineux",
        "Cross-site WebSocket refused": "WebSocket intersite refusé",
        "This WebSocket connection was opened from a page on another site.": (
            "Cette connexion WebSocket a été ouverte depuis une page d'un autre site."
        ),
        "Not a WebSocket handshake": "Ce n'est pas une négociation WebSocket",
        "The upgrade request is incomplete.": "La demande de mise à niveau est incomplète.",
        "The application refused the connection": "L'application a refusé la connexion",
        "The application is not reachable": "L'application est injoignable",
        "The application behind this address is not answering right now. Please try again in a moment.": (
            "L'application derrière cette adresse ne répond pas pour le moment. Réessayez dans un instant."
        ),
        "The application's certificate is not trusted": "Le certificat de l'application n'est pas reconnu",
        "The gateway could not verify the TLS certificate of the application behind this address, so it did "
        "not send your request. Please tell your administrator.": (
            "La passerelle n'a pas pu vérifier le certificat TLS de l'application derrière "
            "cette adresse et n'a "
            "donc pas envoyé votre requête. Prévenez votre administrateur."
        ),
        "The application took too long to answer": "L'application a mis trop de temps à répondre",
        "The application behind this address did not answer in time. Please try again.": (
            "L'application derrière cette adresse n'a pas répondu à temps. Réessayez."
        ),
        "The application sent an invalid answer": "L'application a envoyé une réponse invalide",
        "The application behind this address answered in a way the gateway cannot pass on. Please try "
        "again, or tell your administrator if it keeps happening.": (
            "L'application derrière cette adresse a répondu d'une façon que la passerelle ne peut pas "
            "transmettre. Réessayez, ou prévenez votre administrateur si cela se reproduit."
        ),
        "This request cannot be forwarded": "Cette requête ne peut pas être transmise",
        "One of the headers this request would carry to the application cannot be sent safely, so the "
        "gateway did not send it. Please tell your administrator.": (
            "Un des en-têtes que cette requête porterait vers l'application ne peut pas être envoyé sans "
            "risque ; la passerelle n'a donc pas envoyé la requête. Prévenez votre administrateur."
        ),
        "This address cannot be forwarded": "Cette adresse ne peut pas être transmise",
        "The path contains an encoded '/' where the application's prefix is, so it cannot be mapped.": (
            "Le chemin contient un « / » encodé à l'endroit du préfixe de l'application : il ne "
            "peut pas être "
            "associé."
        ),
        # Entra's errors explained (oidc/errors.py): title, words for the user, words for the admin.
        "Sign-in failed": "Échec de la connexion",
        "Microsoft could not sign you in. Try again; if it keeps happening, contact your administrator.": (
            "Microsoft n'a pas pu vous connecter. Réessayez ; si cela se reproduit, contactez "
            "votre administrateur."
        ),
        "See the error code and correlation ID in the Entra sign-in logs.": (
            "Cherchez le code d'erreur et l'ID de corrélation dans les journaux de connexion d'Entra."
        ),
        "Sign-in is not set up correctly": "La connexion n'est pas configurée correctement",
        "Your company's Microsoft sign-in does not know this address yet.": (
            "La connexion Microsoft de votre entreprise ne connaît pas encore cette adresse."
        ),
        "Register this gateway's redirect URI on the app registration "
        "(Authentication > Web > Redirect URIs).": (
            "Enregistrez l'URI de redirection de cette passerelle dans l'inscription d'application "
            "(Authentification > Web > URI de redirection)."
        ),
        "Your company's directory does not know this application.": (
            "L'annuaire de votre entreprise ne connaît pas cette application."
        ),
        "Check the application (client) ID and tenant ID. A new app registration can take a few minutes to "
        "propagate.": (
            "Vérifiez l'ID d'application (client) et l'ID de locataire. Une nouvelle "
            "inscription d'application "
            "peut mettre quelques minutes à se propager."
        ),
        "Permission needed": "Autorisation nécessaire",
        "This application needs permission that has not been granted yet.": (
            "Cette application a besoin d'une autorisation qui n'a pas encore été accordée."
        ),
        "Grant admin consent for the app's API permissions (openid, profile, email, offline_access).": (
            "Accordez le consentement administrateur pour les autorisations d'API de l'application (openid, "
            "profile, email, offline_access)."
        ),
        "Consent declined": "Consentement refusé",
        "Sign-in was cancelled because consent was declined.": (
            "La connexion a été annulée car le consentement a été refusé."
        ),
        "Grant admin consent for the app if users cannot consent themselves.": (
            "Accordez le consentement administrateur pour l'application si les utilisateurs ne peuvent pas "
            "consentir eux-mêmes."
        ),
        "Administrator approval needed": "Approbation d'un administrateur nécessaire",
        "An administrator must approve this application before you can use it.": (
            "Un administrateur doit approuver cette application avant que vous puissiez l'utiliser."
        ),
        "Grant admin consent for the app in Enterprise applications > Permissions.": (
            "Accordez le consentement administrateur dans Applications d'entreprise > Autorisations."
        ),
        "You don't have access yet": "Vous n'avez pas encore accès",
        "Your account is not assigned to this application. Ask your administrator to assign you a role.": (
            "Votre compte n'est pas affecté à cette application. Demandez à votre "
            "administrateur de vous attribuer "
            "un rôle."
        ),
        "Assign the user (or a group they belong to) to the enterprise application, or turn off 'Assignment "
        "required'.": (
            "Affectez l'utilisateur (ou l'un de ses groupes) à l'application d'entreprise, ou désactivez "
            "« Affectation requise »."
        ),
        "The gateway could not prove its identity to Microsoft.": (
            "La passerelle n'a pas pu prouver son identité à Microsoft."
        ),
        "The client secret is invalid: configure the secret's *value* (not its ID), or rotate it.": (
            "Le secret client n'est pas valide : configurez la *valeur* du secret (pas son ID), "
            "ou renouvelez-le."
        ),
        "The gateway's credentials with Microsoft have expired.": (
            "Les identifiants de la passerelle auprès de Microsoft ont expiré."
        ),
        "The client secret has expired: create a new one and update the gateway configuration.": (
            "Le secret client a expiré : créez-en un nouveau et mettez à jour la configuration "
            "de la passerelle."
        ),
        "The certificate assertion was rejected: check the uploaded certificate and its thumbprint.": (
            "L'assertion de certificat a été refusée : vérifiez le certificat chargé et son empreinte."
        ),
        "Extra verification needed": "Vérification supplémentaire nécessaire",
        "Your organisation requires multi-factor authentication. Sign in again and complete it.": (
            "Votre organisation exige une authentification multifacteur. Reconnectez-vous et terminez-la."
        ),
        "Conditional Access requires MFA for this app.": "L'accès conditionnel exige la MFA "
        "pour cette application.",
        "Access blocked by your organisation": "Accès bloqué par votre organisation",
        "Your organisation's security policy blocked this sign-in.": (
            "La stratégie de sécurité de votre organisation a bloqué cette connexion."
        ),
        "A Conditional Access policy blocked the sign-in; see the sign-in logs for the correlation ID.": (
            "Une stratégie d'accès conditionnel a bloqué la connexion ; cherchez l'ID de "
            "corrélation dans les "
            "journaux de connexion."
        ),
        "Wrong account for this company": "Mauvais compte pour cette entreprise",
        "The account you chose does not belong to this company. Sign in with your account at this company.": (
            "Le compte choisi n'appartient pas à cette entreprise. Connectez-vous avec votre compte de cette "
            "entreprise."
        ),
        "The user is from another tenant; use that company's own login page or invite them as a guest.": (
            "L'utilisateur vient d'un autre locataire : utilisez la page de connexion de son entreprise ou "
            "invitez-le en tant qu'invité."
        ),
        "This sign-in link was already used. Start again.": "Ce lien de connexion a déjà servi. Recommencez.",
        "The authorization code was redeemed twice (often a double submit or a replay).": (
            "Le code d'autorisation a été échangé deux fois (souvent un double envoi ou un rejeu)."
        ),
        "The sign-in could not be completed. Start again.": "La connexion n'a pas pu aboutir. Recommencez.",
        "PKCE verifier mismatch: the sign-in was started by another request.": (
            "Vérificateur PKCE différent : la connexion a été commencée par une autre requête."
        ),
        "Sign-in cancelled": "Connexion annulée",
        "The sign-in was cancelled or access was denied.": "La connexion a été annulée ou l'accès refusé.",
        "The user cancelled, or consent was declined.": "L'utilisateur a annulé, ou le "
        "consentement a été refusé.",
    }
)

CATALOGUE: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "en": MappingProxyType({message: message for message in _FRENCH}),
        "fr": MappingProxyType(dict(_FRENCH)),
    }
)


def translate(message: str, language: str) -> str:
    """``message`` in ``language``; the English text itself when the catalogue has no entry for it."""
    return CATALOGUE.get(language, CATALOGUE[DEFAULT_LANGUAGE]).get(message, message)
