// Checks Blacklist Sync's signing test vectors (schemas/vectors/signing-v1.txt) with nothing but the JDK (17+):
// recomputes every leaf, root and audit path, re-signs every batch root, verifies every record the way a consumer
// does, and refuses every negative case with the expected reason. Usage:
//   javac -d out VerifyVectors.java && java -cp out VerifyVectors schemas/vectors/signing-v1.txt
// Exit status 0 when everything agrees, 1 with one line per disagreement otherwise.

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.PKCS8EncodedKeySpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public final class VerifyVectors {
    static final byte[] CONTEXT = "blacklist-sync.v1.batch:".getBytes(StandardCharsets.UTF_8);
    // DER headers that turn raw Ed25519 keys into the encodings the JDK's KeyFactory reads (RFC 8410).
    static final byte[] X509_PREFIX = HexFormat.of().parseHex("302a300506032b6570032100");
    static final byte[] PKCS8_PREFIX = HexFormat.of().parseHex("302e020100300506032b657004220420");

    /** A keyring entry, with the private key the vectors publish so that signing can be checked too. */
    record Key(String id, List<String> authorities, PublicKey publicKey, PrivateKey privateKey) {
        boolean covers(String authority) {
            for (String pattern : authorities) {
                boolean family = pattern.endsWith(".*");
                if (family ? authority.startsWith(pattern.substring(0, pattern.length() - 1)) : pattern.equals(authority)) {
                    return true;
                }
            }
            return false;
        }
    }

    /** One Kafka record: its value bytes and its headers (name to UTF-8 text). */
    record KafkaRecord(String label, String expected, String leafHex, byte[] value, Map<String, String> headers) {}

    record Batch(String name, int size, String rootHex, String signature, List<KafkaRecord> records) {}

    // ---- RFC 6962 / RFC 9162 Merkle tree ----

    static byte[] sha256(byte prefix, byte[]... parts) {
        try {
            MessageDigest digest = MessageDigest.getInstance("SHA-256");
            digest.update(prefix);
            for (byte[] part : parts) {
                digest.update(part);
            }
            return digest.digest();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    static byte[] leafHash(byte[] value) {
        return sha256((byte) 0x00, value);
    }

    static byte[] nodeHash(byte[] left, byte[] right) {
        return sha256((byte) 0x01, left, right);
    }

    static int split(int n) {
        int k = 1;
        while (k * 2 < n) {
            k *= 2;
        }
        return k;
    }

    /** MTH(D[n]) over leaf hashes: split at the largest power of two smaller than n. */
    static byte[] treeHash(List<byte[]> leaves) {
        if (leaves.size() == 1) {
            return leaves.get(0);
        }
        int k = split(leaves.size());
        return nodeHash(treeHash(leaves.subList(0, k)), treeHash(leaves.subList(k, leaves.size())));
    }

    /** PATH(m, D[n]): sibling hashes from the leaf up to the root, concatenated (the x-merkle-path bytes). */
    static byte[] auditPath(int m, List<byte[]> leaves) {
        if (leaves.size() == 1) {
            return new byte[0];
        }
        int k = split(leaves.size());
        byte[] below = m < k ? auditPath(m, leaves.subList(0, k)) : auditPath(m - k, leaves.subList(k, leaves.size()));
        byte[] sibling = m < k ? treeHash(leaves.subList(k, leaves.size())) : treeHash(leaves.subList(0, k));
        byte[] path = Arrays.copyOf(below, below.length + 32);
        System.arraycopy(sibling, 0, path, below.length, 32);
        return path;
    }

    /** The root from one leaf, its index, the batch size and its audit path (RFC 9162 2.1.3.2); null if they disagree. */
    static byte[] rootFromPath(byte[] leaf, long index, long size, byte[] path) {
        if (index < 0 || index >= size || path.length % 32 != 0) {
            return null;
        }
        long fn = index;
        long sn = size - 1;
        byte[] r = leaf;
        for (int at = 0; at < path.length; at += 32) {
            byte[] p = Arrays.copyOfRange(path, at, at + 32);
            if (sn == 0) {
                return null;
            }
            if ((fn & 1) == 1 || fn == sn) {
                r = nodeHash(p, r);
                if ((fn & 1) == 0) {
                    while (fn != 0 && (fn & 1) == 0) {
                        fn >>= 1;
                        sn >>= 1;
                    }
                }
            } else {
                r = nodeHash(r, p);
            }
            fn >>= 1;
            sn >>= 1;
        }
        return sn == 0 ? r : null;
    }

    // ---- What a consumer checks (CONTRACT section 4); the answer is "ok" or the DLQ reason ----

    static String verify(byte[] value, Map<String, String> headers, Map<String, Key> keyring) {
        Key key = keyring.get(headers.getOrDefault("x-key-id", ""));
        if (key == null) {
            return "unknown_key";
        }
        if (!key.covers(headers.getOrDefault("x-authority", ""))) {
            return "unauthorized_authority";
        }
        try {
            long size = Long.parseLong(headers.get("x-merkle-size"));
            long index = Long.parseLong(headers.get("x-merkle-index"));
            byte[] path = Base64.getDecoder().decode(headers.getOrDefault("x-merkle-path", ""));
            byte[] root = rootFromPath(leafHash(value), index, size, path);
            if (root == null) {
                return "bad_signature";
            }
            Signature ed25519 = Signature.getInstance("Ed25519");
            ed25519.initVerify(key.publicKey());
            ed25519.update(CONTEXT);
            ed25519.update(root);
            return ed25519.verify(Base64.getDecoder().decode(headers.get("x-signature"))) ? "ok" : "bad_signature";
        } catch (IllegalArgumentException | NullPointerException | GeneralSecurityException e) {
            return "bad_signature"; // malformed numbers, base64 or signature: never "ok"
        }
    }

    // ---- CONTRACT section 2: the pseudonym of a subject ----

    static String idHash(String key, String kind, String id) throws GeneralSecurityException {
        Mac hmac = Mac.getInstance("HmacSHA256");
        hmac.init(new SecretKeySpec(key.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
        String message = kind + ":" + id.strip().toUpperCase(Locale.ROOT);
        return HexFormat.of().formatHex(hmac.doFinal(message.getBytes(StandardCharsets.UTF_8)));
    }

    // ---- What a publisher does: sign the batch root ----

    static String sign(PrivateKey key, byte[] root) throws GeneralSecurityException {
        Signature ed25519 = Signature.getInstance("Ed25519");
        ed25519.initSign(key);
        ed25519.update(CONTEXT);
        ed25519.update(root);
        return Base64.getEncoder().encodeToString(ed25519.sign());
    }

    static byte[] concat(byte[] a, byte[] b) {
        byte[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    static Key key(String[] fields) throws GeneralSecurityException {
        KeyFactory factory = KeyFactory.getInstance("Ed25519");
        byte[] raw = Base64.getDecoder().decode(fields[3]);
        PublicKey publicKey = factory.generatePublic(new X509EncodedKeySpec(concat(X509_PREFIX, raw)));
        byte[] seed = HexFormat.of().parseHex(fields[4]);
        PrivateKey privateKey = factory.generatePrivate(new PKCS8EncodedKeySpec(concat(PKCS8_PREFIX, seed)));
        return new Key(fields[1], List.of(fields[2].split(",")), publicKey, privateKey);
    }

    /** `value=<base64> name=value ...` from field `from` on; a value may contain '=' (base64 padding). */
    static KafkaRecord kafkaRecord(String label, String expected, String leafHex, String[] fields, int from) {
        byte[] value = null;
        Map<String, String> headers = new LinkedHashMap<>();
        for (int i = from; i < fields.length; i++) {
            int eq = fields[i].indexOf('=');
            String name = fields[i].substring(0, eq);
            String text = fields[i].substring(eq + 1);
            if (name.equals("value")) {
                value = Base64.getDecoder().decode(text);
            } else {
                headers.put(name, text);
            }
        }
        return new KafkaRecord(label, expected, leafHex, value, headers);
    }

    public static void main(String[] args) throws Exception {
        Path file = Path.of(args.length > 0 ? args[0] : "schemas/vectors/signing-v1.txt");
        Map<String, Key> keyring = new LinkedHashMap<>();
        Map<String, Batch> batches = new LinkedHashMap<>();
        List<KafkaRecord> negatives = new ArrayList<>();
        List<String> failures = new ArrayList<>();
        String subjectKey = null;
        int subjects = 0;
        for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
            if (line.isBlank() || line.startsWith("#")) {
                continue;
            }
            String[] f = line.split(" ", -1);
            switch (f[0]) {
                case "context" -> {
                    if (!f[1].equals(HexFormat.of().formatHex(CONTEXT))) {
                        failures.add("signature context differs: " + f[1]);
                    }
                }
                case "key" -> keyring.put(f[1], key(f));
                case "subject_hash_key" -> subjectKey = f[1];
                case "subject" -> {
                    subjects++;
                    if (!idHash(subjectKey, f[1], f[2]).equals(f[3])) {
                        failures.add("subject " + f[2] + ": id_hash differs");
                    }
                }
                case "batch" -> batches.put(f[1], new Batch(f[1], Integer.parseInt(f[2]), f[3], f[4], new ArrayList<>()));
                case "record" -> batches.get(f[1]).records().add(kafkaRecord(f[1] + "/" + f[2], "ok", f[3], f, 4));
                case "negative" -> negatives.add(kafkaRecord(f[1], f[2], null, f, 3));
                default -> failures.add("unknown line: " + f[0]);
            }
        }
        int records = 0;
        for (Batch batch : batches.values()) {
            records += batch.records().size();
            checkBatch(batch, keyring, failures);
        }
        for (KafkaRecord negative : negatives) {
            String answer = verify(negative.value(), negative.headers(), keyring);
            if (!answer.equals(negative.expected())) {
                failures.add("negative " + negative.label() + ": expected " + negative.expected() + ", got " + answer);
            }
        }
        if (!failures.isEmpty()) {
            failures.forEach(System.out::println);
            System.exit(1);
        }
        System.out.printf(
                "OK: %d records in %d batches verified; their leaves, roots, audit paths and signatures reproduced; "
                        + "%d negative cases refused with the expected reason; %d subject hashes reproduced%n",
                records, batches.size(), negatives.size(), subjects);
    }

    static void checkBatch(Batch batch, Map<String, Key> keyring, List<String> failures) throws GeneralSecurityException {
        List<byte[]> leaves = new ArrayList<>();
        for (KafkaRecord record : batch.records()) {
            leaves.add(leafHash(record.value()));
        }
        if (leaves.size() != batch.size()) {
            failures.add(batch.name() + ": " + leaves.size() + " records for size " + batch.size());
            return;
        }
        byte[] root = treeHash(leaves);
        if (!HexFormat.of().formatHex(root).equals(batch.rootHex())) {
            failures.add(batch.name() + ": root differs");
        }
        Key key = keyring.get(batch.records().get(0).headers().get("x-key-id"));
        if (!sign(key.privateKey(), root).equals(batch.signature())) {
            failures.add(batch.name() + ": re-signing the root gives another signature");
        }
        for (int i = 0; i < leaves.size(); i++) {
            KafkaRecord record = batch.records().get(i);
            String path = Base64.getEncoder().encodeToString(auditPath(i, leaves));
            if (!HexFormat.of().formatHex(leaves.get(i)).equals(record.leafHex())) {
                failures.add(record.label() + ": leaf hash differs");
            }
            if (!path.equals(record.headers().get("x-merkle-path"))) {
                failures.add(record.label() + ": audit path differs");
            }
            String answer = verify(record.value(), record.headers(), keyring);
            if (!answer.equals("ok")) {
                failures.add(record.label() + ": refused with " + answer);
            }
        }
    }
}
