# A small stand-in for nixpkgs' `lib`: only the functions the flake's files and crane's
# lib/*.nix reach, written from their documented behaviour. Used by crane-eval-nixpkgs.nix
# (nixpkgs cannot be fetched here). A function missing here shows up as an evaluation
# error in nix/checks/crane-eval.sh, never as a silent pass.
{ version }:
let
  b = builtins;

  id = x: x;
  flip =
    f: a: c:
    f c a;
  isFunction = f: b.isFunction f || (b.isAttrs f && f ? __functor);
  hasPrefix = p: s: b.substring 0 (b.stringLength p) s == p;
  hasSuffix =
    p: s:
    let
      ls = b.stringLength s;
      lp = b.stringLength p;
    in
    lp <= ls && b.substring (ls - lp) lp s == p;
  removePrefix =
    p: s: if hasPrefix p s then b.substring (b.stringLength p) (b.stringLength s) s else s;
  optionalString = c: s: if c then s else "";
  optionalAttrs = c: a: if c then a else { };
  optionals = c: l: if c then l else [ ];
  optional = c: x: if c then [ x ] else [ ];
  concatStrings = b.concatStringsSep "";
  concatMapStrings = f: l: concatStrings (map f l);
  concatMapStringsSep =
    sep: f: l:
    b.concatStringsSep sep (map f l);
  # nixpkgs leaves "safe" words unquoted; crane's scripts are the same text either way
  escapeShellArg =
    a:
    let
      s = toString a;
    in
    if b.match "[[:alnum:],._+:@%/-]+" s != null then
      s
    else
      "'${b.replaceStrings [ "'" ] [ "'\\''" ] s}'";
  escapeRegex =
    let
      chars = "\\[{()^$?*+|.";
      special = b.genList (i: b.substring i 1 chars) (b.stringLength chars);
    in
    b.replaceStrings special (map (c: "\\${c}") special);
  toLower = b.replaceStrings (b.genList (i: b.substring i 1 "ABCDEFGHIJKLMNOPQRSTUVWXYZ") 26) (
    b.genList (i: b.substring i 1 "abcdefghijklmnopqrstuvwxyz") 26
  );
  splitString =
    sep: s: b.filter b.isString (b.split (escapeRegex (toString sep)) (toString s));
  last = l: b.elemAt l (b.length l - 1);
  flatten = x: if b.isList x then b.concatMap flatten x else [ x ];
  unique = b.foldl' (acc: e: if b.elem e acc then acc else acc ++ [ e ]) [ ];
  findFirst =
    pred: default: l:
    let
      m = b.filter pred l;
    in
    if m == [ ] then default else b.head m;
  sublist =
    start: count: l:
    let
      len = b.length l;
      n = if start + count > len then len - start else count;
    in
    b.genList (i: b.elemAt l (start + i)) (if start >= len then 0 else n);
  listHasPrefix = p: l: sublist 0 (b.length p) l == p;
  subtractLists = e: b.filter (x: !(b.elem x e));
  sortOn = f: b.sort (x: y: f x < f y);
  nameValuePair = name: value: { inherit name value; };
  mapAttrs' = f: set: b.listToAttrs (map (n: f n set.${n}) (b.attrNames set));
  mapAttrsToList = f: set: map (n: f n set.${n}) (b.attrNames set);
  filterAttrs =
    pred: set: b.listToAttrs (b.concatMap (n: if pred n set.${n} then [ (nameValuePair n set.${n}) ] else [ ]) (b.attrNames set));
  attrsToList = mapAttrsToList nameValuePair;
  genAttrs = names: f: b.listToAttrs (map (n: nameValuePair n (f n)) names);
  recursiveUpdate =
    l: r:
    l
    // b.mapAttrs (
      n: v: if b.isAttrs v && b.isAttrs (l.${n} or null) && !(v ? outPath) then recursiveUpdate l.${n} v else v
    ) r;
  mergeAttrsList = b.foldl' (a: c: a // c) { };
  warn = msg: b.trace "warning: ${msg}";
  warnIf = c: msg: if c then warn msg else id;
  splitVersion = v: b.filter b.isString (b.split "[.-]" v);
  versionOlder = v1: v2: b.compareVersions v2 v1 == 1;
  versionAtLeast = v1: v2: !(versionOlder v1 v2);
  assertOneOf =
    name: val: xs:
    b.elem val xs || throw "${name} must be one of ${b.toJSON xs}, but is: ${b.toJSON val}";

  # cleanSourceWith: a filtered source whose origSrc/filter crane reads back
  cleanSourceWith =
    {
      src,
      filter ? _: _: true,
      name ? null,
    }:
    let
      orig =
        if src._isLibCleanSourceWith or false then
          { inherit (src) origSrc filter name; }
        else
          {
            origSrc = src;
            filter = _: _: true;
            name = "source";
          };
      combined = path: type: filter path type && orig.filter path type;
      name' = if name != null then name else orig.name;
    in
    {
      _isLibCleanSourceWith = true;
      inherit (orig) origSrc;
      filter = combined;
      name = name';
      outPath = b.path {
        path = orig.origSrc;
        name = name';
        filter = combined;
      };
    };
  sourceFilesBySuffices =
    src: exts:
    cleanSourceWith {
      inherit src;
      filter = path: type: type == "directory" || b.any (e: hasSuffix e (b.baseNameOf path)) exts;
    };

  # lib.fileset, as far as nix/outputs.nix uses it. A file set is a pair of predicates on
  # absolute path strings: `file` (is this file in the set) and `dir` (may this directory
  # hold a file of the set). Unlike nixpkgs, empty directories are not pruned.
  fileset =
    let
      under = root: p: p == root || hasPrefix "${root}/" p;
      ofPath = p: {
        file = under (toString p);
        dir = d: under (toString p) d || hasPrefix "${d}/" (toString p);
      };
      coerce = x: if b.isPath x then ofPath x else x;
      empty = {
        file = _: false;
        dir = _: false;
      };
    in
    {
      maybeMissing = p: if b.pathExists p then ofPath p else empty;
      unions =
        sets:
        let
          cs = map coerce sets;
        in
        {
          file = p: b.any (s: s.file p) cs;
          dir = d: b.any (s: s.dir d) cs;
        };
      difference =
        a: c:
        let
          ca = coerce a;
          cc = coerce c;
        in
        {
          file = p: ca.file p && !cc.file p;
          dir = ca.dir;
        };
      fileFilter = pred: root: {
        file =
          p:
          under (toString root) p
          && pred (
            let
              name = b.baseNameOf p;
            in
            {
              inherit name;
              type = "regular";
              hasExt = e: hasSuffix ".${e}" name;
            }
          );
        dir = (ofPath root).dir;
      };
      toSource =
        { root, fileset }:
        let
          s = coerce fileset;
        in
        cleanSourceWith {
          src = root;
          filter = path: type: if type == "directory" then s.dir path else s.file path;
        };
    };

  makeScope =
    newScope: f:
    let
      self = f self // {
        newScope = scope: newScope (self // scope);
        callPackage = self.newScope { };
        overrideScope = g: makeScope newScope (extends g f);
        packages = f;
      };
    in
    self;
  extends =
    g: f: self:
    let
      super = f self;
    in
    super // g self super;
in
{
  inherit version;
  inherit (b)
    any
    all
    attrNames
    attrValues
    concatStringsSep
    elem
    filter
    foldl'
    genList
    groupBy
    head
    isAttrs
    isList
    isString
    length
    mapAttrs
    replaceStrings
    stringLength
    substring
    tail
    ;
  foldl = b.foldl';
  inherit
    id
    flip
    isFunction
    hasPrefix
    hasSuffix
    removePrefix
    optionalString
    optionalAttrs
    optionals
    optional
    concatStrings
    concatMapStrings
    concatMapStringsSep
    escapeShellArg
    escapeRegex
    toLower
    splitString
    last
    flatten
    unique
    findFirst
    sublist
    subtractLists
    sortOn
    nameValuePair
    mapAttrs'
    mapAttrsToList
    filterAttrs
    attrsToList
    genAttrs
    recursiveUpdate
    mergeAttrsList
    warn
    warnIf
    splitVersion
    versionOlder
    versionAtLeast
    assertOneOf
    cleanSourceWith
    sourceFilesBySuffices
    fileset
    makeScope
    extends
    ;
  trivial = { inherit warn warnIf id flip; };
  strings = {
    inherit
      concatStrings
      escapeShellArg
      hasPrefix
      hasSuffix
      optionalString
      removePrefix
      splitString
      ;
  };
  lists = {
    inherit
      flatten
      unique
      findFirst
      sublist
      optional
      optionals
      last
      subtractLists
      ;
    hasPrefix = listHasPrefix;
  };
  attrsets = {
    inherit
      optionalAttrs
      filterAttrs
      mapAttrs'
      mapAttrsToList
      nameValuePair
      recursiveUpdate
      genAttrs
      ;
  };
  asserts.assertMsg = c: msg: c || throw msg;
  licenses = {
    mit = {
      spdxId = "MIT";
      shortName = "mit";
    };
    asl20 = {
      spdxId = "Apache-2.0";
      shortName = "asl20";
    };
  };
}
