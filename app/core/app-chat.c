/* app-chat.c - a conversation: its messages, their versions, its title, and its JSON form.
 *
 * A chat is a tree of messages. Editing a question or writing an answer again does not replace
 * anything: the new message becomes another version of the same place in the conversation,
 * a sibling of the old one, and each version keeps the conversation that followed it. Every
 * node remembers which of its children (the versions of the next message) is shown, so
 * following those choices from the root gives one conversation, the shown path. That path
 * is what the rest of the app sees: it sits in a GListStore, so the window's list view follows
 * appends, version switches and truncations by itself, and the engine adapter builds its
 * prompts from it alone. A change of the path is one splice from the first position that
 * differs, one items-changed.
 *
 * Until the person names the chat, its title is the first line of the first question shown,
 * kept short enough for the sidebar; it is recomputed whenever that question changes, so the
 * sidebar never shows a stale title.
 *
 * The JSON reader is the gate between a file on disk and the rest of the app: chat files
 * may have been cut short by a full disk, edited by hand or written by a newer version, so
 * every member is checked for its type and range and anything wrong becomes a GError that
 * names the member, never a crash or a half-built chat. Members this version does not know
 * are ignored, and absent optional members take their defaults.
 */
#define G_LOG_DOMAIN "sightline-chat"

#include <glib/gi18n.h>
#include <math.h>
#include <string.h>

#include "app-chat.h"
#include "app-chat-private.h"
#include "app-chat-store.h"
#include "app-enums.h"
#include "app-grounding.h"
#include "vl2-input.h"

/* Version 1 was a flat list of messages; version 2 adds each message's parent and the version
 * shown (see app-chat.h). Version 1 files are still read. */
#define CHAT_FORMAT_VERSION 2

/* Characters of a derived title, the ellipsis included: what fits a sidebar row. */
#define TITLE_MAX_CHARS 48

/* A message of the tree. The root has no message: its children are the versions of the first
 * message. */
typedef struct _Node Node;
struct _Node
{
  AppMessage *message;          /* NULL for the root */
  Node       *parent;           /* NULL for the root */
  GPtrArray  *children;         /* Node*, the versions of the next message, oldest first */
  guint       selected;         /* the child shown, when there are children */
};

struct _AppChat
{
  GObject     parent_instance;

  char       *id;
  char       *custom_title;     /* NULL unless the person named the chat */
  char       *derived_title;    /* NULL while there is no question to derive it from */
  gint64      created;
  gint64      modified;
  Node       *root;
  GHashTable *nodes;            /* AppMessage* -> Node*, every message of the tree */
  GListStore *messages;         /* the shown path, without the root */

  /* The question the derived title comes from, watched for edits. */
  AppMessage *title_message;
  gulong      title_message_handler;

  /* The unsent question */
  char       *draft_text;       /* never NULL */
  AppPromptKind draft_kind;
  char      **draft_images;     /* never NULL */

  char       *model;            /* the folder of the model it last used, or NULL */
};

G_DEFINE_FINAL_TYPE (AppChat, app_chat, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_ID,
  PROP_TITLE,
  PROP_CUSTOM_TITLE,
  PROP_CREATED,
  PROP_MODIFIED,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* The file format's names, fixed here rather than taken from the enum nicks, so renaming
 * an enum value can never change what is on disk. */
static const char * const role_names[] = {
  [APP_ROLE_USER] = "user",
  [APP_ROLE_ASSISTANT] = "assistant",
};

static const char * const state_names[] = {
  [APP_MESSAGE_COMPLETE] = "complete",
  [APP_MESSAGE_PENDING] = "pending",
  [APP_MESSAGE_STREAMING] = "streaming",
  [APP_MESSAGE_STOPPED] = "stopped",
  [APP_MESSAGE_FAILED] = "failed",
  [APP_MESSAGE_INTERRUPTED] = "interrupted",
};

/* APP_FINISH_NONE is written as no member at all. */
static const char * const finish_names[] = {
  [APP_FINISH_NONE] = "none",
  [APP_FINISH_END] = "end",
  [APP_FINISH_LENGTH] = "length",
  [APP_FINISH_CONTEXT] = "context",
};

static const char * const kind_names[] = {
  [APP_PROMPT_PLAIN] = "plain",
  [APP_PROMPT_GROUNDED_CAPTION] = "grounded-caption",
  [APP_PROMPT_FIND] = "find",
};

gboolean
app_chat_image_id_is_valid (const char *image_id)
{
  gsize ext_len = 0;

  if (image_id == NULL)
    return FALSE;

  for (guint i = 0; i < 64; i++)
    {
      char c = image_id[i];

      if (!g_ascii_isdigit (c) && !(c >= 'a' && c <= 'f'))
        return FALSE;
    }

  if (image_id[64] != '.')
    return FALSE;

  for (const char *p = image_id + 65; *p != '\0'; p++)
    {
      if (!g_ascii_isdigit (*p) && !g_ascii_islower (*p))
        return FALSE;
      ext_len++;
    }

  return ext_len >= 1 && ext_len <= 8;
}

/* ---------------------------------------------------------------------------------------------
 * Titles
 */

static gboolean
is_line_break (gunichar c)
{
  return c == '\n' || c == '\r' || c == 0x2028 || c == 0x2029;
}

/* Characters that belong to the one before them on screen: cutting before them would
 * leave a lone accent, or break a family emoji or a flag into pieces. */
static gboolean
continues_cluster (gunichar c)
{
  return g_unichar_ismark (c) ||
         c == 0x200D ||                     /* zero width joiner */
         (c >= 0xFE00 && c <= 0xFE0F) ||    /* variation selectors */
         (c >= 0x1F3FB && c <= 0x1F3FF) ||  /* skin tone modifiers */
         (c >= 0xE0020 && c <= 0xE007F);    /* emoji tag sequences */
}

/* The first line of `text` that has something to read, on one line with single spaces;
 * NULL when there is none (an empty question, or one with only pictures). */
static char *
first_line (const char *text)
{
  GString *line = g_string_new (NULL);
  gboolean pending_space = FALSE;

  for (const char *p = text; *p != '\0'; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      if (is_line_break (c))
        {
          if (line->len > 0)
            break;
          pending_space = FALSE;
        }
      else if (g_unichar_isspace (c) || g_unichar_iscntrl (c))
        {
          pending_space = TRUE;
        }
      else
        {
          if (pending_space && line->len > 0)
            g_string_append_c (line, ' ');
          pending_space = FALSE;
          g_string_append_unichar (line, c);
        }
    }

  if (line->len == 0)
    {
      g_string_free (line, TRUE);
      return NULL;
    }

  return g_string_free (line, FALSE);
}

static char *
derive_title (const char *text)
{
  g_autofree char *line = NULL;
  const char *hard_cut;
  const char *cut;
  const char *space = NULL;
  glong keep = TITLE_MAX_CHARS - 1;   /* room for the ellipsis */

  if (text == NULL || !g_utf8_validate (text, -1, NULL))
    return NULL;

  line = first_line (text);
  if (line == NULL)
    return NULL;

  if (g_utf8_strlen (line, -1) <= TITLE_MAX_CHARS)
    return g_steal_pointer (&line);

  hard_cut = g_utf8_offset_to_pointer (line, keep);
  cut = hard_cut;

  if (*hard_cut != ' ')
    {
      /* Prefer ending on a whole word, unless that would throw away most of the line
       * (a long URL, or a language written without spaces). */
      for (const char *p = line; p < hard_cut; p = g_utf8_next_char (p))
        if (*p == ' ')
          space = p;

      if (space != NULL && g_utf8_pointer_to_offset (line, space) >= keep / 2)
        {
          cut = space;
        }
      else
        {
          /* Step back to the start of what shows as one character, so the title never
           * ends in a lone accent or half of a joined emoji. */
          while (cut > line)
            {
              gunichar c = g_utf8_get_char (cut);
              gunichar before = g_utf8_get_char (g_utf8_prev_char (cut));

              if (!continues_cluster (c) && before != 0x200D)
                break;
              cut = g_utf8_prev_char (cut);
            }

          if (cut == line)
            cut = hard_cut;
        }
    }

  while (cut > line && cut[-1] == ' ')
    cut--;

  return g_strdup_printf ("%.*s…", (int)(cut - line), line);
}

static void
app_chat_notify_title_changed (AppChat *self)
{
  if (self->custom_title == NULL)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TITLE]);
}

static void
app_chat_update_derived_title (AppChat *self)
{
  char *derived = NULL;

  if (self->title_message != NULL)
    {
      /* a grounded question's tags are not part of its title */
      g_autofree char *plain = app_grounding_plain_text (app_message_get_text (self->title_message));

      derived = derive_title (plain);
    }

  if (g_strcmp0 (derived, self->derived_title) == 0)
    {
      g_free (derived);
      return;
    }

  g_free (self->derived_title);
  self->derived_title = derived;
  app_chat_notify_title_changed (self);
}

static void
on_title_message_text_changed (AppChat    *self,
                               GParamSpec *pspec,
                               AppMessage *message)
{
  app_chat_update_derived_title (self);
}

static void
app_chat_set_title_message (AppChat    *self,
                            AppMessage *message)
{
  if (self->title_message == message)
    return;

  if (self->title_message != NULL)
    {
      g_clear_signal_handler (&self->title_message_handler, self->title_message);
      g_clear_object (&self->title_message);
    }

  if (message != NULL)
    {
      self->title_message = g_object_ref (message);
      self->title_message_handler =
        g_signal_connect_swapped (message, "notify::text",
                                  G_CALLBACK (on_title_message_text_changed),
                                  self);
    }
}

/* Finds the first question again; cheap, and only needed when messages come or go. */
static void
app_chat_find_title_message (AppChat *self)
{
  guint n = g_list_model_get_n_items (G_LIST_MODEL (self->messages));
  AppMessage *found = NULL;

  for (guint i = 0; i < n && found == NULL; i++)
    {
      g_autoptr(AppMessage) message = g_list_model_get_item (G_LIST_MODEL (self->messages), i);

      if (app_message_get_role (message) == APP_ROLE_USER)
        found = message;
    }

  app_chat_set_title_message (self, found);
  app_chat_update_derived_title (self);
}

/* ---------------------------------------------------------------------------------------------
 * The tree of versions
 */

static Node *
node_new (Node       *parent,
          AppMessage *message)
{
  Node *node = g_new0 (Node, 1);

  node->parent = parent;
  node->message = message != NULL ? g_object_ref (message) : NULL;
  node->children = g_ptr_array_new ();
  return node;
}

/* Frees `node` and everything under it, and forgets their messages. Without recursion: a long
 * conversation is a deep tree. */
static void
node_free_tree (AppChat *self,
                Node    *node)
{
  g_autoptr(GPtrArray) stack = g_ptr_array_new ();

  g_ptr_array_add (stack, node);
  while (stack->len > 0)
    {
      Node *n = g_ptr_array_steal_index_fast (stack, stack->len - 1);

      for (guint i = 0; i < n->children->len; i++)
        g_ptr_array_add (stack, g_ptr_array_index (n->children, i));
      if (n->message != NULL)
        {
          g_hash_table_remove (self->nodes, n->message);
          g_object_unref (n->message);
        }
      g_ptr_array_unref (n->children);
      g_free (n);
    }
}

/* A new version of what follows `parent`, shown from now on. */
static Node *
node_add_child (AppChat    *self,
                Node       *parent,
                AppMessage *message)
{
  Node *child = node_new (parent, message);

  g_ptr_array_add (parent->children, child);
  parent->selected = parent->children->len - 1;
  g_hash_table_insert (self->nodes, message, child);
  return child;
}

static Node *
node_shown_child (Node *node)
{
  if (node->children->len == 0)
    return NULL;
  return g_ptr_array_index (node->children, node->selected);
}

/* Which version of its place `node` is, from 0. */
static guint
node_index (Node *node)
{
  guint index = 0;

  g_ptr_array_find (node->parent->children, node, &index);
  return index;
}

/* Every message node in depth-first order, versions oldest first: each parent comes before
 * its children, the order the chat file lists them in. */
static GPtrArray *
all_nodes (AppChat *self)
{
  g_autoptr(GPtrArray) stack = g_ptr_array_new ();
  GPtrArray *nodes = g_ptr_array_new ();

  for (guint i = self->root->children->len; i > 0; i--)
    g_ptr_array_add (stack, g_ptr_array_index (self->root->children, i - 1));

  while (stack->len > 0)
    {
      Node *n = g_ptr_array_steal_index_fast (stack, stack->len - 1);

      g_ptr_array_add (nodes, n);
      for (guint i = n->children->len; i > 0; i--)
        g_ptr_array_add (stack, g_ptr_array_index (n->children, i - 1));
    }

  return nodes;
}

/* The node shown at `position`, or NULL past the end. */
static Node *
shown_node (AppChat *self,
            guint    position)
{
  g_autoptr(AppMessage) message = g_list_model_get_item (G_LIST_MODEL (self->messages), position);

  return message != NULL ? g_hash_table_lookup (self->nodes, message) : NULL;
}

/* Shows `node`: every node above it chooses the branch that leads to it. */
static void
select_path_to (Node *node)
{
  for (Node *n = node; n->parent != NULL; n = n->parent)
    n->parent->selected = node_index (n);
}

/* Makes the list show the path the nodes' choices give now, in one splice from the first
 * position that differs. */
static void
sync_path (AppChat *self)
{
  g_autoptr(GPtrArray) path = g_ptr_array_new ();
  GListModel *model = G_LIST_MODEL (self->messages);
  guint n_shown = g_list_model_get_n_items (model);
  guint first = 0;

  for (Node *n = node_shown_child (self->root); n != NULL; n = node_shown_child (n))
    g_ptr_array_add (path, n->message);

  while (first < n_shown && first < path->len)
    {
      g_autoptr(AppMessage) shown = g_list_model_get_item (model, first);

      if (shown != g_ptr_array_index (path, first))
        break;
      first++;
    }

  if (first == n_shown && first == path->len)
    return;

  g_list_store_splice (self->messages, first, n_shown - first,
                       (gpointer *)path->pdata + first, path->len - first);
  app_chat_find_title_message (self);
}

/* ---------------------------------------------------------------------------------------------
 * GObject
 */

static void
app_chat_constructed (GObject *object)
{
  AppChat *self = (AppChat *)object;

  G_OBJECT_CLASS (app_chat_parent_class)->constructed (object);

  if (self->id == NULL)
    self->id = g_uuid_string_random ();
}

static void
app_chat_dispose (GObject *object)
{
  AppChat *self = (AppChat *)object;

  app_chat_set_title_message (self, NULL);

  G_OBJECT_CLASS (app_chat_parent_class)->dispose (object);
}

static void
app_chat_finalize (GObject *object)
{
  AppChat *self = (AppChat *)object;

  g_clear_object (&self->messages);
  node_free_tree (self, self->root);
  g_hash_table_unref (self->nodes);
  g_free (self->id);
  g_free (self->custom_title);
  g_free (self->derived_title);
  g_free (self->draft_text);
  g_free (self->model);
  g_strfreev (self->draft_images);

  G_OBJECT_CLASS (app_chat_parent_class)->finalize (object);
}

static void
app_chat_get_property (GObject    *object,
                       guint       prop_id,
                       GValue     *value,
                       GParamSpec *pspec)
{
  AppChat *self = APP_CHAT (object);

  switch (prop_id)
    {
    case PROP_ID:
      g_value_set_string (value, self->id);
      break;

    case PROP_TITLE:
      g_value_set_string (value, app_chat_get_title (self));
      break;

    case PROP_CUSTOM_TITLE:
      g_value_set_boolean (value, app_chat_has_custom_title (self));
      break;

    case PROP_CREATED:
      g_value_set_int64 (value, self->created);
      break;

    case PROP_MODIFIED:
      g_value_set_int64 (value, self->modified);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_chat_set_property (GObject      *object,
                       guint         prop_id,
                       const GValue *value,
                       GParamSpec   *pspec)
{
  AppChat *self = APP_CHAT (object);

  switch (prop_id)
    {
    case PROP_ID:
      /* The id names the chat's file; only a well-formed one may be given. */
      g_assert (self->id == NULL);
      if (g_value_get_string (value) != NULL)
        {
          g_return_if_fail (g_uuid_string_is_valid (g_value_get_string (value)));
          self->id = g_value_dup_string (value);
        }
      break;

    case PROP_TITLE:
      app_chat_set_title (self, g_value_get_string (value));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
app_chat_class_init (AppChatClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = app_chat_constructed;
  object_class->dispose = app_chat_dispose;
  object_class->finalize = app_chat_finalize;
  object_class->get_property = app_chat_get_property;
  object_class->set_property = app_chat_set_property;

  properties[PROP_ID] =
    g_param_spec_string ("id", NULL, NULL,
                         NULL,
                         (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  properties[PROP_TITLE] =
    g_param_spec_string ("title", NULL, NULL,
                         NULL,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  properties[PROP_CUSTOM_TITLE] =
    g_param_spec_boolean ("custom-title", NULL, NULL,
                          FALSE,
                          (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  properties[PROP_CREATED] =
    g_param_spec_int64 ("created", NULL, NULL,
                        G_MININT64, G_MAXINT64, 0,
                        (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  properties[PROP_MODIFIED] =
    g_param_spec_int64 ("modified", NULL, NULL,
                        G_MININT64, G_MAXINT64, 0,
                        (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
app_chat_init (AppChat *self)
{
  self->messages = g_list_store_new (APP_TYPE_MESSAGE);
  self->root = node_new (NULL, NULL);
  self->nodes = g_hash_table_new (g_direct_hash, g_direct_equal);
  self->created = g_get_real_time ();
  self->modified = self->created;
  self->draft_text = g_strdup ("");
  self->draft_images = g_new0 (char *, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Public API
 */

AppChat *
app_chat_new (void)
{
  return g_object_new (APP_TYPE_CHAT, NULL);
}

const char *
app_chat_get_id (AppChat *self)
{
  g_return_val_if_fail (APP_IS_CHAT (self), NULL);

  return self->id;
}

const char *
app_chat_get_title (AppChat *self)
{
  g_return_val_if_fail (APP_IS_CHAT (self), NULL);

  if (self->custom_title != NULL)
    return self->custom_title;

  if (self->derived_title != NULL)
    return self->derived_title;

  return _("New Chat");
}

/* NULL or a blank title gives the chat back its derived title. */
void
app_chat_set_title (AppChat    *self,
                    const char *title)
{
  g_autofree char *stripped = NULL;
  g_autofree char *before = NULL;
  gboolean was_custom;

  g_return_if_fail (APP_IS_CHAT (self));

  if (title != NULL)
    stripped = g_strstrip (g_strdup (title));

  if (stripped != NULL && stripped[0] == '\0')
    g_clear_pointer (&stripped, g_free);

  if (g_strcmp0 (stripped, self->custom_title) == 0)
    return;

  before = g_strdup (app_chat_get_title (self));
  was_custom = self->custom_title != NULL;

  g_free (self->custom_title);
  self->custom_title = g_steal_pointer (&stripped);

  g_object_freeze_notify (G_OBJECT (self));
  if (was_custom != (self->custom_title != NULL))
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CUSTOM_TITLE]);
  if (g_strcmp0 (before, app_chat_get_title (self)) != 0)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TITLE]);
  g_object_thaw_notify (G_OBJECT (self));
}

gboolean
app_chat_has_custom_title (AppChat *self)
{
  g_return_val_if_fail (APP_IS_CHAT (self), FALSE);

  return self->custom_title != NULL;
}

gint64
app_chat_get_created (AppChat *self)
{
  g_return_val_if_fail (APP_IS_CHAT (self), 0);

  return self->created;
}

gint64
app_chat_get_modified (AppChat *self)
{
  g_return_val_if_fail (APP_IS_CHAT (self), 0);

  return self->modified;
}

void
app_chat_touch (AppChat *self)
{
  /* Chats are touched on the main thread only. */
  static gint64 last_touch;
  gint64 now;

  g_return_if_fail (APP_IS_CHAT (self));

  /* Strictly later than any earlier touch, even two within one clock tick or after the
   * clock stepped back: the chat saved last must sort first, now and after a restart. */
  now = MAX (self->modified, last_touch);
  now = MAX (g_get_real_time (), now < G_MAXINT64 ? now + 1 : now);
  last_touch = now;

  self->modified = now;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MODIFIED]);
}

GListModel *
app_chat_get_messages (AppChat *self)
{
  g_return_val_if_fail (APP_IS_CHAT (self), NULL);

  return G_LIST_MODEL (self->messages);
}

guint
app_chat_get_n_messages (AppChat *self)
{
  g_return_val_if_fail (APP_IS_CHAT (self), 0);

  return g_list_model_get_n_items (G_LIST_MODEL (self->messages));
}

/* A new reference, as g_list_model_get_item() gives; NULL past the end. */
AppMessage *
app_chat_get_message (AppChat *self,
                      guint    position)
{
  g_return_val_if_fail (APP_IS_CHAT (self), NULL);

  return g_list_model_get_item (G_LIST_MODEL (self->messages), position);
}

void
app_chat_append (AppChat    *self,
                 AppMessage *message)
{
  guint n;
  Node *last;

  g_return_if_fail (APP_IS_CHAT (self));
  g_return_if_fail (APP_IS_MESSAGE (message));
  g_return_if_fail (!g_hash_table_contains (self->nodes, message));

  /* the end of the shown path has no children: it is where the conversation goes on */
  n = g_list_model_get_n_items (G_LIST_MODEL (self->messages));
  last = n > 0 ? shown_node (self, n - 1) : self->root;
  node_add_child (self, last, message);
  g_list_store_append (self->messages, message);

  if (self->title_message == NULL && app_message_get_role (message) == APP_ROLE_USER)
    {
      app_chat_set_title_message (self, message);
      app_chat_update_derived_title (self);
    }
}

void
app_chat_truncate (AppChat *self,
                   guint    position)
{
  Node *node;
  Node *parent;
  guint index;

  g_return_if_fail (APP_IS_CHAT (self));

  node = shown_node (self, position);
  if (node == NULL)
    return;

  parent = node->parent;
  index = node_index (node);
  g_ptr_array_remove_index (parent->children, index);
  parent->selected = index > 0 ? index - 1 : 0;
  node_free_tree (self, node);
  sync_path (self);
}

guint
app_chat_get_n_versions (AppChat *self,
                         guint    position)
{
  Node *node;

  g_return_val_if_fail (APP_IS_CHAT (self), 0);

  node = shown_node (self, position);
  return node != NULL ? node->parent->children->len : 0;
}

guint
app_chat_get_version (AppChat *self,
                      guint    position)
{
  Node *node;

  g_return_val_if_fail (APP_IS_CHAT (self), 0);

  node = shown_node (self, position);
  return node != NULL ? node->parent->selected : 0;
}

void
app_chat_select_version (AppChat *self,
                         guint    position,
                         guint    version)
{
  Node *node;

  g_return_if_fail (APP_IS_CHAT (self));

  node = shown_node (self, position);
  if (node == NULL || version >= node->parent->children->len)
    return;

  node->parent->selected = version;
  sync_path (self);
}

gboolean
app_chat_add_version (AppChat    *self,
                      AppMessage *message,
                      AppMessage *version)
{
  Node *node;

  g_return_val_if_fail (APP_IS_CHAT (self), FALSE);
  g_return_val_if_fail (APP_IS_MESSAGE (message), FALSE);
  g_return_val_if_fail (APP_IS_MESSAGE (version), FALSE);
  g_return_val_if_fail (app_message_get_role (message) == app_message_get_role (version), FALSE);

  node = g_hash_table_lookup (self->nodes, message);
  if (node == NULL || g_hash_table_contains (self->nodes, version))
    return FALSE;

  select_path_to (node_add_child (self, node->parent, version));
  sync_path (self);
  return TRUE;
}

gboolean
app_chat_contains (AppChat    *self,
                   AppMessage *message)
{
  g_return_val_if_fail (APP_IS_CHAT (self), FALSE);

  return message != NULL && g_hash_table_contains (self->nodes, message);
}

/* Case folding alone leaves "é" and "e\u0301", or full-width and ASCII letters, different;
 * compatibility composition makes them the same text before comparing. */
static char *
fold (const char *text)
{
  g_autofree char *folded = g_utf8_casefold (text, -1);
  char *normalized = g_utf8_normalize (folded, -1, G_NORMALIZE_ALL_COMPOSE);

  if (normalized == NULL)
    return g_steal_pointer (&folded);

  return normalized;
}

static GPtrArray *
split_words (const char *text)
{
  GPtrArray *words = g_ptr_array_new_with_free_func (g_free);
  const char *start = NULL;
  const char *p;

  for (p = text; *p != '\0'; p = g_utf8_next_char (p))
    {
      gboolean space = g_unichar_isspace (g_utf8_get_char (p));

      if (space && start != NULL)
        {
          g_ptr_array_add (words, g_strndup (start, p - start));
          start = NULL;
        }
      else if (!space && start == NULL)
        {
          start = p;
        }
    }

  if (start != NULL)
    g_ptr_array_add (words, g_strndup (start, p - start));

  return words;
}

gboolean
app_chat_matches (AppChat    *self,
                  const char *query)
{
  g_autoptr(GPtrArray) words = NULL;
  g_autoptr(GPtrArray) haystacks = NULL;
  g_autoptr(GPtrArray) nodes = NULL;
  g_autofree char *folded_query = NULL;

  g_return_val_if_fail (APP_IS_CHAT (self), FALSE);

  if (query == NULL || !g_utf8_validate (query, -1, NULL))
    return TRUE;

  folded_query = fold (query);
  words = split_words (folded_query);
  if (words->len == 0)
    return TRUE;

  /* every version: what the person wrote once is found, whichever version is shown */
  nodes = all_nodes (self);
  haystacks = g_ptr_array_new_full (nodes->len + 1, g_free);
  g_ptr_array_add (haystacks, fold (app_chat_get_title (self)));

  for (guint i = 0; i < nodes->len; i++)
    {
      Node *node = g_ptr_array_index (nodes, i);
      const char *text = app_message_get_text (node->message);

      if (g_utf8_validate (text, -1, NULL))
        g_ptr_array_add (haystacks, fold (text));
    }

  for (guint w = 0; w < words->len; w++)
    {
      const char *word = g_ptr_array_index (words, w);
      gboolean found = FALSE;

      for (guint h = 0; h < haystacks->len && !found; h++)
        found = strstr (g_ptr_array_index (haystacks, h), word) != NULL;

      if (!found)
        return FALSE;
    }

  return TRUE;
}

static void
collect_image (GPtrArray  *images,
               GHashTable *seen,
               const char *image_id)
{
  char *id;

  if (image_id == NULL || g_hash_table_contains (seen, image_id))
    return;

  id = g_strdup (image_id);
  g_ptr_array_add (images, id);
  g_hash_table_add (seen, id);
}

/* New strings, each id once: the shown conversation's in the order it shows them, then those
 * only other versions hold, then the draft's. */
GPtrArray *
app_chat_collect_images (AppChat *self)
{
  g_autoptr(GHashTable) seen = NULL;
  g_autoptr(GPtrArray) nodes = NULL;
  g_autoptr(GPtrArray) messages = NULL;
  GPtrArray *images;
  guint n;

  g_return_val_if_fail (APP_IS_CHAT (self), NULL);

  seen = g_hash_table_new (g_str_hash, g_str_equal);
  images = g_ptr_array_new_with_free_func (g_free);
  n = g_list_model_get_n_items (G_LIST_MODEL (self->messages));
  nodes = all_nodes (self);
  messages = g_ptr_array_new_full (n + nodes->len, g_object_unref);

  for (guint i = 0; i < n; i++)
    g_ptr_array_add (messages, g_list_model_get_item (G_LIST_MODEL (self->messages), i));
  for (guint i = 0; i < nodes->len; i++)
    g_ptr_array_add (messages, g_object_ref (((Node *)g_ptr_array_index (nodes, i))->message));

  for (guint i = 0; i < messages->len; i++)
    {
      AppMessage *message = g_ptr_array_index (messages, i);
      const char * const *ids = app_message_get_images (message);

      for (guint j = 0; ids[j] != NULL; j++)
        collect_image (images, seen, ids[j]);
      /* an id of the chat's, unless a hand-edited file says otherwise */
      collect_image (images, seen, app_message_get_boxes_image (message));
    }

  for (guint j = 0; self->draft_images[j] != NULL; j++)
    collect_image (images, seen, self->draft_images[j]);

  return images;
}

/* ---------------------------------------------------------------------------------------------
 * The draft
 */

const char *
app_chat_get_draft_text (AppChat *self)
{
  g_return_val_if_fail (APP_IS_CHAT (self), NULL);

  return self->draft_text;
}

AppPromptKind
app_chat_get_draft_kind (AppChat *self)
{
  g_return_val_if_fail (APP_IS_CHAT (self), APP_PROMPT_PLAIN);

  return self->draft_kind;
}

const char * const *
app_chat_get_draft_images (AppChat *self)
{
  g_return_val_if_fail (APP_IS_CHAT (self), NULL);

  return (const char * const *)self->draft_images;
}

/* White space alone is not worth keeping; the composer does not send it either. */
gboolean
app_chat_has_draft (AppChat *self)
{
  const char *p;

  g_return_val_if_fail (APP_IS_CHAT (self), FALSE);

  if (self->draft_images[0] != NULL)
    return TRUE;

  for (p = self->draft_text; *p != '\0'; p = g_utf8_next_char (p))
    {
      if (!g_unichar_isspace (g_utf8_get_char (p)))
        return TRUE;
    }

  return FALSE;
}

gboolean
app_chat_set_draft (AppChat            *self,
                    const char         *text,
                    AppPromptKind       kind,
                    const char * const *images)
{
  static const char * const none[] = { NULL };

  g_return_val_if_fail (APP_IS_CHAT (self), FALSE);
  g_return_val_if_fail (kind < G_N_ELEMENTS (kind_names), FALSE);

  if (text == NULL)
    text = "";
  if (images == NULL)
    images = none;

  if (g_strcmp0 (text, self->draft_text) == 0 &&
      kind == self->draft_kind &&
      g_strv_equal ((const char * const *)self->draft_images, images))
    return FALSE;

  g_free (self->draft_text);
  self->draft_text = g_strdup (text);
  self->draft_kind = kind;
  g_strfreev (self->draft_images);
  self->draft_images = g_strdupv ((char **)images);

  return TRUE;
}

const char *
app_chat_get_model (AppChat *self)
{
  g_return_val_if_fail (APP_IS_CHAT (self), NULL);
  return self->model;
}

gboolean
app_chat_set_model (AppChat    *self,
                    const char *model_dir)
{
  g_return_val_if_fail (APP_IS_CHAT (self), FALSE);

  /* the chat file is JSON: a folder whose name is not UTF-8 is not remembered */
  if (model_dir && (!model_dir[0] || !g_utf8_validate (model_dir, -1, NULL)))
    model_dir = NULL;
  if (g_strcmp0 (model_dir, self->model) == 0)
    return FALSE;
  g_free (self->model);
  self->model = g_strdup (model_dir);
  return TRUE;
}

gboolean
app_chat_is_blank (AppChat *self)
{
  g_return_val_if_fail (APP_IS_CHAT (self), FALSE);

  return app_chat_get_n_messages (self) == 0 &&
         self->custom_title == NULL &&
         !app_chat_has_draft (self);
}

/* ---------------------------------------------------------------------------------------------
 * JSON
 */

/* A streamed piece cut inside a character must not make the whole file unreadable. */
static void
add_string_member (JsonBuilder *builder,
                   const char  *key,
                   const char  *value)
{
  json_builder_set_member_name (builder, key);

  if (value == NULL)
    {
      json_builder_add_null_value (builder);
    }
  else if (g_utf8_validate (value, -1, NULL))
    {
      json_builder_add_string_value (builder, value);
    }
  else
    {
      g_autofree char *valid = g_utf8_make_valid (value, -1);
      json_builder_add_string_value (builder, valid);
    }
}

/* `parent` is the index of the message it follows in the file, -1 for a first message;
 * `selected` whether it is the version shown among several. */
static void
add_message (JsonBuilder *builder,
             AppMessage  *message,
             int          parent,
             gboolean     has_versions,
             gboolean     selected)
{
  const char * const *images = app_message_get_images (message);
  AppFinishReason finish = app_message_get_finish_reason (message);

  json_builder_begin_object (builder);

  json_builder_set_member_name (builder, "parent");
  if (parent < 0)
    json_builder_add_null_value (builder);
  else
    json_builder_add_int_value (builder, parent);

  if (has_versions)
    {
      json_builder_set_member_name (builder, "selected");
      json_builder_add_boolean_value (builder, selected);
    }

  json_builder_set_member_name (builder, "role");
  json_builder_add_string_value (builder, role_names[app_message_get_role (message)]);

  add_string_member (builder, "text", app_message_get_text (message));

  json_builder_set_member_name (builder, "images");
  json_builder_begin_array (builder);
  for (guint i = 0; images[i] != NULL; i++)
    json_builder_add_string_value (builder, images[i]);
  json_builder_end_array (builder);

  json_builder_set_member_name (builder, "state");
  json_builder_add_string_value (builder, state_names[app_message_get_state (message)]);

  if (finish != APP_FINISH_NONE)
    {
      json_builder_set_member_name (builder, "finish");
      json_builder_add_string_value (builder, finish_names[finish]);
    }

  add_string_member (builder, "error", app_message_get_error (message));
  add_string_member (builder, "note", app_message_get_note (message));
  add_string_member (builder, "boxes_image", app_message_get_boxes_image (message));

  json_builder_set_member_name (builder, "n_tokens");
  json_builder_add_int_value (builder, app_message_get_n_tokens (message));

  json_builder_set_member_name (builder, "first_token_seconds");
  json_builder_add_double_value (builder, app_message_get_first_token_seconds (message));

  json_builder_set_member_name (builder, "tokens_per_second");
  json_builder_add_double_value (builder, app_message_get_tokens_per_second (message));

  json_builder_set_member_name (builder, "created");
  json_builder_add_int_value (builder, app_message_get_created (message));

  json_builder_end_object (builder);
}

JsonNode *
app_chat_to_json (AppChat *self)
{
  g_autoptr(JsonBuilder) builder = NULL;
  g_autoptr(GPtrArray) nodes = NULL;
  g_autoptr(GHashTable) indices = NULL;

  g_return_val_if_fail (APP_IS_CHAT (self), NULL);

  builder = json_builder_new ();
  json_builder_begin_object (builder);

  json_builder_set_member_name (builder, "version");
  json_builder_add_int_value (builder, CHAT_FORMAT_VERSION);

  add_string_member (builder, "id", self->id);
  add_string_member (builder, "title", app_chat_get_title (self));
  if (self->model)
    add_string_member (builder, "model", self->model);

  json_builder_set_member_name (builder, "custom_title");
  json_builder_add_boolean_value (builder, self->custom_title != NULL);

  json_builder_set_member_name (builder, "created");
  json_builder_add_int_value (builder, self->created);

  json_builder_set_member_name (builder, "modified");
  json_builder_add_int_value (builder, self->modified);

  json_builder_set_member_name (builder, "messages");
  json_builder_begin_array (builder);
  nodes = all_nodes (self);
  indices = g_hash_table_new (g_direct_hash, g_direct_equal);
  for (guint i = 0; i < nodes->len; i++)
    {
      Node *node = g_ptr_array_index (nodes, i);
      Node *parent = node->parent;
      gpointer parent_index = NULL;

      /* parents come first, so each one has its index already */
      g_hash_table_lookup_extended (indices, parent, NULL, &parent_index);
      g_hash_table_insert (indices, node, GUINT_TO_POINTER (i));
      add_message (builder, node->message,
                   parent == self->root ? -1 : (int)GPOINTER_TO_UINT (parent_index),
                   parent->children->len > 1,
                   node_shown_child (parent) == node);
    }
  json_builder_end_array (builder);

  if (app_chat_has_draft (self))
    {
      json_builder_set_member_name (builder, "draft");
      json_builder_begin_object (builder);
      add_string_member (builder, "text", self->draft_text);
      json_builder_set_member_name (builder, "kind");
      json_builder_add_string_value (builder, kind_names[self->draft_kind]);
      json_builder_set_member_name (builder, "images");
      json_builder_begin_array (builder);
      for (guint i = 0; self->draft_images[i] != NULL; i++)
        json_builder_add_string_value (builder, self->draft_images[i]);
      json_builder_end_array (builder);
      json_builder_end_object (builder);
    }

  json_builder_end_object (builder);

  return json_builder_get_root (builder);
}

/* Where a member sits, for error messages: "id", "messages[2].role". */
typedef struct
{
  JsonObject *object;
  const char *prefix;   /* "" at the top level, "messages[2]." inside a message */
} Reader;

static gboolean
corrupt (GError     **error,
         Reader      *reader,
         const char  *key,
         const char  *why)
{
  g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_CORRUPT,
               "%s%s: %s", reader->prefix, key, why);
  return FALSE;
}

/* NULL when the member is absent or null. */
static JsonNode *
reader_get (Reader     *reader,
            const char *key)
{
  JsonNode *node = json_object_get_member (reader->object, key);

  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return NULL;

  return node;
}

static gboolean
holds_value_of_type (JsonNode *node,
                     GType     type)
{
  return JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == type;
}

static gboolean
read_string (Reader      *reader,
             const char  *key,
             gboolean     required,
             const char **value,
             GError     **error)
{
  JsonNode *node = reader_get (reader, key);

  *value = NULL;

  if (node == NULL)
    return required ? corrupt (error, reader, key, _("missing")) : TRUE;

  if (!holds_value_of_type (node, G_TYPE_STRING))
    return corrupt (error, reader, key, _("not a string"));

  *value = json_node_get_string (node);
  if (!g_utf8_validate (*value, -1, NULL))
    return corrupt (error, reader, key, _("not valid UTF-8"));

  return TRUE;
}

static gboolean
read_int (Reader      *reader,
          const char  *key,
          gint64       min,
          gint64       max,
          gint64      *value,
          GError     **error)
{
  JsonNode *node = reader_get (reader, key);

  if (node == NULL)
    return TRUE;

  if (!holds_value_of_type (node, G_TYPE_INT64))
    return corrupt (error, reader, key, _("not an integer"));

  *value = json_node_get_int (node);
  if (*value < min || *value > max)
    return corrupt (error, reader, key, _("out of range"));

  return TRUE;
}

static gboolean
read_seconds (Reader      *reader,
              const char  *key,
              double      *value,
              GError     **error)
{
  JsonNode *node = reader_get (reader, key);

  if (node == NULL)
    return TRUE;

  /* The writer may print a whole number of seconds without a fraction. */
  if (holds_value_of_type (node, G_TYPE_DOUBLE))
    *value = json_node_get_double (node);
  else if (holds_value_of_type (node, G_TYPE_INT64))
    *value = (double)json_node_get_int (node);
  else
    return corrupt (error, reader, key, _("not a number"));

  if (!isfinite (*value) || *value < 0)
    return corrupt (error, reader, key, _("out of range"));

  return TRUE;
}

static gboolean
read_boolean (Reader      *reader,
              const char  *key,
              gboolean    *value,
              GError     **error)
{
  JsonNode *node = reader_get (reader, key);

  if (node == NULL)
    return TRUE;

  if (!holds_value_of_type (node, G_TYPE_BOOLEAN))
    return corrupt (error, reader, key, _("not a boolean"));

  *value = json_node_get_boolean (node);
  return TRUE;
}

static gboolean
read_name (Reader             *reader,
           const char         *key,
           const char * const *names,
           guint               n_names,
           guint              *value,
           GError            **error)
{
  const char *name;

  if (!read_string (reader, key, FALSE, &name, error))
    return FALSE;

  if (name == NULL)
    return TRUE;

  for (guint i = 0; i < n_names; i++)
    {
      if (strcmp (name, names[i]) == 0)
        {
          *value = i;
          return TRUE;
        }
    }

  g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_CORRUPT,
               _("%s%s: unknown value “%s”"), reader->prefix, key, name);
  return FALSE;
}

/* `parent` and `selected` receive the message's place in the tree, which files of version 2
 * give: the index of the message it follows (-1 for a first message) and whether it is the
 * version shown. Version 1 is one conversation, each message following the one before. */
/* A time read from a chat file, in microseconds since 1970. One later than a day from now was
 * not written by a clock that is right: the chat would sort first for ever and, once touched,
 * date every later save after it (app_chat_touch() keeps times increasing). It is taken as now,
 * and one before 1970 as 1970. The day's margin keeps the order of chats saved just before the
 * clock was set back. */
static gint64
plausible_time (gint64 time)
{
  gint64 now = g_get_real_time ();

  if (time > now + (gint64) G_USEC_PER_SEC * 60 * 60 * 24)
    return now;
  return MAX (time, 0);
}

static AppMessage *
message_from_json (JsonNode  *node,
                   guint      index,
                   gint64     version,
                   gint64    *parent,
                   gboolean  *selected,
                   GError   **error)
{
  g_autofree char *prefix = g_strdup_printf ("messages[%u].", index);
  g_autoptr(AppMessage) message = NULL;
  g_autoptr(GPtrArray) images = NULL;
  Reader reader = { NULL, prefix };
  JsonNode *images_node;
  const char *text;
  const char *error_text;
  const char *note;
  const char *boxes_image;
  guint role = APP_ROLE_USER;
  guint state = APP_MESSAGE_COMPLETE;
  guint finish = APP_FINISH_NONE;
  gint64 n_tokens = 0;
  double first_token_seconds = 0;
  double tokens_per_second = 0;
  gint64 created = 0;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_CORRUPT,
                   "messages[%u]: %s", index, _("not an object"));
      return NULL;
    }

  reader.object = json_node_get_object (node);

  if (reader_get (&reader, "role") == NULL)
    {
      corrupt (error, &reader, "role", _("missing"));
      return NULL;
    }

  if (!read_name (&reader, "role", role_names, G_N_ELEMENTS (role_names), &role, error) ||
      !read_string (&reader, "text", TRUE, &text, error) ||
      !read_name (&reader, "state", state_names, G_N_ELEMENTS (state_names), &state, error) ||
      !read_name (&reader, "finish", finish_names, G_N_ELEMENTS (finish_names), &finish, error) ||
      !read_string (&reader, "error", FALSE, &error_text, error) ||
      !read_string (&reader, "note", FALSE, &note, error) ||
      !read_string (&reader, "boxes_image", FALSE, &boxes_image, error) ||
      !read_int (&reader, "n_tokens", 0, G_MAXUINT, &n_tokens, error) ||
      !read_seconds (&reader, "first_token_seconds", &first_token_seconds, error) ||
      !read_seconds (&reader, "tokens_per_second", &tokens_per_second, error) ||
      !read_int (&reader, "created", G_MININT64, G_MAXINT64, &created, error))
    return NULL;

  images = g_ptr_array_new ();
  images_node = reader_get (&reader, "images");
  if (images_node != NULL)
    {
      JsonArray *array;
      guint n;

      if (!JSON_NODE_HOLDS_ARRAY (images_node))
        {
          corrupt (error, &reader, "images", _("not an array"));
          return NULL;
        }

      array = json_node_get_array (images_node);
      n = json_array_get_length (array);
      for (guint i = 0; i < n; i++)
        {
          JsonNode *item = json_array_get_element (array, i);
          const char *id;

          if (!holds_value_of_type (item, G_TYPE_STRING) ||
              !app_chat_image_id_is_valid ((id = json_node_get_string (item))))
            {
              corrupt (error, &reader, "images", _("not a list of image ids"));
              return NULL;
            }

          g_ptr_array_add (images, (gpointer)id);
        }
    }
  g_ptr_array_add (images, NULL);

  *parent = (gint64)index - 1;
  *selected = FALSE;
  if (version >= 2)
    {
      /* an absent or null parent: a version of the first message */
      *parent = -1;
      if (!read_int (&reader, "parent", 0, (gint64)index - 1, parent, error) ||
          !read_boolean (&reader, "selected", selected, error))
        return NULL;
    }

  if (boxes_image != NULL && !app_chat_image_id_is_valid (boxes_image))
    {
      corrupt (error, &reader, "boxes_image", _("not an image id"));
      return NULL;
    }

  /* The app that was writing this answer is gone (it crashed, or the file was saved while the
   * answer streamed): what it wrote is kept, and can be continued. */
  if (state == APP_MESSAGE_STREAMING || state == APP_MESSAGE_PENDING)
    state = APP_MESSAGE_INTERRUPTED;

  message = app_message_new (role, text);
  app_message_set_images (message, (const char * const *)images->pdata);
  app_message_set_state (message, state);
  app_message_set_finish_reason (message, finish);
  app_message_set_error (message, error_text);
  app_message_set_note (message, note);
  app_message_set_boxes_image (message, boxes_image);
  app_message_set_stats (message, n_tokens, first_token_seconds, tokens_per_second);
  app_message_set_created (message, plausible_time (created));

  return g_steal_pointer (&message);
}

/* The optional "draft": what the person was writing. A bad draft spoils the file like any
 * other member: the file is then left as it is rather than half read. */
static gboolean
draft_from_json (Reader     *parent,
                 AppChat    *chat,
                 GError    **error)
{
  g_autoptr(GPtrArray) images = NULL;
  Reader reader = { NULL, "draft." };
  JsonNode *node = reader_get (parent, "draft");
  JsonNode *images_node;
  const char *text;
  guint kind = APP_PROMPT_PLAIN;

  if (node == NULL)
    return TRUE;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    return corrupt (error, parent, "draft", _("not an object"));

  reader.object = json_node_get_object (node);
  if (!read_string (&reader, "text", FALSE, &text, error) ||
      !read_name (&reader, "kind", kind_names, G_N_ELEMENTS (kind_names), &kind, error))
    return FALSE;

  images = g_ptr_array_new ();
  images_node = reader_get (&reader, "images");
  if (images_node != NULL)
    {
      JsonArray *array;

      if (!JSON_NODE_HOLDS_ARRAY (images_node))
        return corrupt (error, &reader, "images", _("not an array"));

      array = json_node_get_array (images_node);
      for (guint i = 0; i < json_array_get_length (array); i++)
        {
          JsonNode *item = json_array_get_element (array, i);
          const char *id;

          if (!holds_value_of_type (item, G_TYPE_STRING) ||
              !app_chat_image_id_is_valid ((id = json_node_get_string (item))))
            return corrupt (error, &reader, "images", _("not a list of image ids"));

          g_ptr_array_add (images, (gpointer)id);
        }
    }
  g_ptr_array_add (images, NULL);

  app_chat_set_draft (chat, text, kind, (const char * const *)images->pdata);
  return TRUE;
}

/* Where a chat's messages come from: the array of a parsed document, or the text of that array
 * in a chat file, parsed one message at a time. */
typedef struct
{
  JsonArray    *array;
  guint         next;
  gboolean      walking;
  Vl2JsonWalk   walk;
  JsonParser   *parser;
} Messages;

/* 1 with the next message in *node (valid until the next call), 0 after the last, -1 with
 * `error` set. */
static int
messages_next (Messages  *messages,
               JsonNode **node,
               GError   **error)
{
  g_autofree char *name = NULL;
  const char *value;
  gsize length;
  int r;

  if (!messages->walking)
    {
      if (messages->next >= json_array_get_length (messages->array))
        return 0;
      *node = json_array_get_element (messages->array, messages->next++);
      return 1;
    }
  r = vl2_json_walk_next (&messages->walk, &name, &value, &length, error);
  if (r <= 0)
    return r;
  if (!vl2_json_load_data (messages->parser, value, length, NULL, error))
    return -1;
  *node = json_parser_get_root (messages->parser);
  return 1;
}

static AppChat *
chat_from_object (JsonObject  *object,
                  Messages    *messages,
                  GError     **error)
{
  g_autoptr(AppChat) chat = NULL;
  g_autoptr(GPtrArray) nodes = NULL;
  g_autoptr(GHashTable) chosen = NULL;
  g_autofree char *stripped_title = NULL;
  GHashTableIter iter;
  gpointer key;
  gpointer value;
  Reader reader = { NULL, "" };
  JsonNode *version_node;
  JsonNode *messages_node;
  const char *id;
  const char *title;
  const char *model;
  gboolean custom_title = FALSE;
  gint64 created = 0;
  gint64 modified = 0;
  gint64 version = 0;

  reader.object = object;

  /* The version comes first: a newer format may change the meaning of everything else. */
  version_node = reader_get (&reader, "version");
  if (version_node == NULL)
    {
      corrupt (error, &reader, "version", _("missing"));
      return NULL;
    }
  if (!holds_value_of_type (version_node, G_TYPE_INT64) ||
      (version = json_node_get_int (version_node)) < 1 || version > CHAT_FORMAT_VERSION)
    {
      corrupt (error, &reader, "version", _("unsupported version"));
      return NULL;
    }

  if (!read_string (&reader, "id", TRUE, &id, error) ||
      !read_string (&reader, "title", FALSE, &title, error) ||
      !read_boolean (&reader, "custom_title", &custom_title, error) ||
      !read_int (&reader, "created", G_MININT64, G_MAXINT64, &created, error) ||
      !read_int (&reader, "modified", G_MININT64, G_MAXINT64, &modified, error))
    return NULL;

  /* The id names the file the chat is saved to. */
  if (!g_uuid_string_is_valid (id))
    {
      corrupt (error, &reader, "id", _("not a valid id"));
      return NULL;
    }

  if (custom_title)
    {
      stripped_title = g_strstrip (g_strdup (title != NULL ? title : ""));
      if (stripped_title[0] == '\0')
        {
          corrupt (error, &reader, "title", _("missing"));
          return NULL;
        }
    }

  messages_node = reader_get (&reader, "messages");
  if (messages_node == NULL)
    {
      corrupt (error, &reader, "messages", _("missing"));
      return NULL;
    }
  if (!JSON_NODE_HOLDS_ARRAY (messages_node))
    {
      corrupt (error, &reader, "messages", _("not an array"));
      return NULL;
    }

  if (!messages->walking)
    messages->array = json_node_get_array (messages_node);
  chat = g_object_new (APP_TYPE_CHAT, "id", id, NULL);
  nodes = g_ptr_array_new_full (messages->array ? json_array_get_length (messages->array) : 0,
                                NULL);
  chosen = g_hash_table_new (g_direct_hash, g_direct_equal);
  for (guint i = 0;; i++)
    {
      g_autoptr(AppMessage) message = NULL;
      gint64 parent_index = -1;
      gboolean selected = FALSE;
      JsonNode *element;
      Node *parent;
      int r = messages_next (messages, &element, error);

      if (r < 0)
        return NULL;
      if (r == 0)
        break;
      message = message_from_json (element, i, version, &parent_index, &selected, error);
      if (message == NULL)
        return NULL;

      parent = parent_index < 0 ? chat->root : g_ptr_array_index (nodes, parent_index);
      g_ptr_array_add (nodes, node_add_child (chat, parent, message));

      if (selected)
        {
          if (g_hash_table_contains (chosen, parent))
            {
              g_autofree char *prefix = g_strdup_printf ("messages[%u].", i);
              Reader message_reader = { NULL, prefix };

              corrupt (error, &message_reader, "selected", _("another version is selected"));
              return NULL;
            }
          g_hash_table_insert (chosen, parent, GUINT_TO_POINTER (parent->children->len - 1));
        }
    }

  /* without a choice, a message shows its newest version */
  g_hash_table_iter_init (&iter, chosen);
  while (g_hash_table_iter_next (&iter, &key, &value))
    ((Node *)key)->selected = GPOINTER_TO_UINT (value);

  chat->created = plausible_time (created);
  chat->modified = plausible_time (modified);
  chat->custom_title = g_steal_pointer (&stripped_title);

  sync_path (chat);

  if (!draft_from_json (&reader, chat, error))
    return NULL;

  if (!read_string (&reader, "model", FALSE, &model, error))
    return NULL;
  app_chat_set_model (chat, model);

  return g_steal_pointer (&chat);
}

AppChat *
app_chat_new_from_json (JsonNode  *node,
                        GError   **error)
{
  Messages messages = { 0 };

  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error_literal (error, APP_CHAT_STORE_ERROR, APP_CHAT_STORE_ERROR_CORRUPT,
                           _("not a JSON object"));
      return NULL;
    }
  return chat_from_object (json_node_get_object (node), &messages, error);
}

AppChat *
app_chat_new_from_text (const char  *text,
                        gsize        length,
                        GError     **error)
{
  g_autoptr(JsonParser) parser = json_parser_new_immutable ();
  g_autoptr(JsonObject) head = json_object_new ();
  Messages messages = { 0 };
  Vl2JsonWalk walk;
  const char *messages_text = NULL;
  gsize messages_length = 0;

  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!vl2_json_walk_begin (&walk, text, length, '{', error))
    return NULL;
  for (;;)
    {
      g_autofree char *name = NULL;
      const char *value;
      gsize value_length;
      int r = vl2_json_walk_next (&walk, &name, &value, &value_length, error);

      if (r < 0)
        return NULL;
      if (r == 0)
        break;
      if (g_str_equal (name, "messages") && value[0] == '[')
        {
          /* read after the rest, which says how (the version), one message at a time */
          messages_text = value;
          messages_length = value_length;
          json_object_set_array_member (head, name, json_array_new ());
          continue;
        }
      if (!vl2_json_load_data (parser, value, value_length, NULL, error))
        return NULL;
      json_object_set_member (head, name, json_node_copy (json_parser_get_root (parser)));
    }
  if (messages_text != NULL)
    {
      if (!vl2_json_walk_begin (&messages.walk, messages_text, messages_length, '[', error))
        return NULL;
      messages.walking = TRUE;
      messages.parser = parser;
    }
  return chat_from_object (head, &messages, error);
}
