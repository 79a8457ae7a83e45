/* routes.c - the route table: method, path, handler, body kind, the scope a
 * caller's API key needs (NULL: public, or authenticated by the handler
 * itself: the self-service routes /me/... by the user's session token), and 1 for the routes that
 * answer from memory on the loop thread even when a handler pool runs the others (see
 * sd_http_options.handler_threads). Literal paths come before captures. */
#include "api/api.h"

const char sd_api_scope_introspect[] = "validate";

const sd_route sd_api_routes[] = {
    {"POST", "/sessions", sd_api_session_create, SD_ROUTE_BODY, "sessions", 0},
    {"POST", "/sessions/validate", sd_api_validate_token, SD_ROUTE_BODY_OPTIONAL, "validate", 0},
    {"POST", "/sessions/bulk-delete", sd_api_bulk_delete, SD_ROUTE_BODY, "admin", 0},
    {"POST", "/sessions/token", sd_api_session_token, SD_ROUTE_BODY_OPTIONAL, "validate", 0},
    {"GET", "/sessions/{sessionId}", sd_api_session_get, SD_ROUTE_NO_BODY, "sessions", 0},
    {"PUT", "/sessions/{sessionId}", sd_api_session_update, SD_ROUTE_BODY, "sessions", 0},
    {"DELETE", "/sessions/{sessionId}", sd_api_session_delete, SD_ROUTE_NO_BODY, "sessions", 0},
    {"GET", "/sessions/{sessionId}/validate", sd_api_validate_id, SD_ROUTE_NO_BODY, "validate", 0},
    {"POST", "/sessions/{sessionId}/refresh", sd_api_session_refresh, SD_ROUTE_NO_BODY, "sessions",
     0},
    {"GET", "/sessions/{sessionId}/events", sd_api_session_events, SD_ROUTE_NO_BODY, "admin", 0},
    {"GET", "/users/{userId}/sessions", sd_api_user_list, SD_ROUTE_NO_BODY, "sessions", 0},
    {"DELETE", "/users/{userId}/sessions", sd_api_user_revoke, SD_ROUTE_NO_BODY, "admin", 0},
    {"GET", "/users/{userId}/events", sd_api_user_events, SD_ROUTE_NO_BODY, "admin", 0},
    {"GET", "/me/sessions", sd_api_me_list, SD_ROUTE_NO_BODY, NULL, 0},
    {"DELETE", "/me/sessions", sd_api_me_revoke_others, SD_ROUTE_NO_BODY, NULL, 0},
    {"DELETE", "/me/sessions/{sessionId}", sd_api_me_revoke, SD_ROUTE_NO_BODY, NULL, 0},
    {"GET", "/admin/not-before", sd_api_not_before_get, SD_ROUTE_NO_BODY, "admin", 0},
    {"POST", "/admin/not-before", sd_api_not_before_set, SD_ROUTE_BODY, "admin", 0},
    {"POST", "/admin/revoke", sd_api_triage_revoke, SD_ROUTE_BODY, "admin", 0},
    {"GET", "/auth", sd_api_forward_auth, SD_ROUTE_NO_BODY, "validate", 0},
    {"POST", "/introspect", sd_api_introspect, SD_ROUTE_FORM, sd_api_scope_introspect, 0},
    {"GET", "/revocations", sd_api_revocations, SD_ROUTE_NO_BODY, "validate", 0},
    {"GET", "/.well-known/jwks.json", sd_api_jwks, SD_ROUTE_NO_BODY, NULL, 1},
    {"GET", "/healthz", sd_api_healthz, SD_ROUTE_NO_BODY, NULL, 1},
    {"GET", "/readyz", sd_api_readyz, SD_ROUTE_NO_BODY, NULL, 0},
    {"GET", "/metrics", sd_api_metrics, SD_ROUTE_NO_BODY, NULL, 0},
    {"GET", "/console", sd_api_console_redirect, SD_ROUTE_NO_BODY, NULL, 1},
    {"GET", "/console/", sd_api_console_index, SD_ROUTE_NO_BODY, NULL, 1},
    {"GET", "/console/{asset}", sd_api_console_asset, SD_ROUTE_NO_BODY, NULL, 1},
    {"GET", "/account", sd_api_account_redirect, SD_ROUTE_NO_BODY, NULL, 1},
    {"GET", "/account/", sd_api_account_index, SD_ROUTE_NO_BODY, NULL, 1},
    {"GET", "/account/{asset}", sd_api_account_asset, SD_ROUTE_NO_BODY, NULL, 1},
};

const int sd_api_nroutes = (int)(sizeof sd_api_routes / sizeof sd_api_routes[0]);
