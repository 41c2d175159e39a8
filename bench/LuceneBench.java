/*
 * LuceneBench.java - the Lucene 8 side of bench/retrieve_bench.sh: BM25
 * (k1=0.9, b=0.4) over a BEIR corpus with Anserini's settings, on one
 * thread, in a warm JVM. Compiled with javac against Debian's
 * liblucene8-java jars (lucene-core, lucene-analyzers-common).
 *
 *   java LuceneBench index  CORPUS.jsonl INDEX_DIR
 *   java LuceneBench search INDEX_DIR QUERIES.jsonl K ROUNDS RUN_OUT
 *
 * index: one document per corpus line, field "contents" = title + " " + text
 * (Anserini's BEIR flat collection), EnglishAnalyzer (Lucene's English
 * stopwords, Porter stemmer: Anserini's default), the id stored and as a
 * sorted doc value (as Anserini does), merged to one segment.
 * search: Anserini's bag-of-words query (each analysed query term a SHOULD
 * clause boosted by its count in the query), top K, each hit's id read
 * from the doc values (the run file needs it); the queries are run 3
 * times to warm the JVM up, then ROUNDS timed rounds over all of them. Prints
 * "lucene qps=Q p50_ms=P cpu_ms=C process_cpu_ms=D rounds=R n=N" (Q the
 * median over the rounds of queries / round wall time, P the median
 * per-query latency over every timed query, C the searching thread's CPU
 * time per query, D the whole JVM's, garbage collector and JIT included)
 * and writes the last round as a TREC run file.
 *
 * The corpus and query files are BEIR JSONL; only the string fields "_id",
 * "title", "text" are read, by the small parser below (no JSON library in
 * the Debian Lucene packages).
 */
import java.io.BufferedReader;
import java.io.IOException;
import java.io.PrintWriter;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.lucene.analysis.Analyzer;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.en.EnglishAnalyzer;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;
import org.apache.lucene.document.Document;
import org.apache.lucene.document.Field;
import org.apache.lucene.document.SortedDocValuesField;
import org.apache.lucene.document.StringField;
import org.apache.lucene.document.TextField;
import org.apache.lucene.index.DirectoryReader;
import org.apache.lucene.index.IndexWriter;
import org.apache.lucene.index.IndexWriterConfig;
import org.apache.lucene.index.LeafReader;
import org.apache.lucene.index.SortedDocValues;
import org.apache.lucene.index.Term;
import org.apache.lucene.search.BooleanClause;
import org.apache.lucene.search.BooleanQuery;
import org.apache.lucene.search.BoostQuery;
import org.apache.lucene.search.IndexSearcher;
import org.apache.lucene.search.Query;
import org.apache.lucene.search.ScoreDoc;
import org.apache.lucene.search.TermQuery;
import org.apache.lucene.search.TopDocs;
import org.apache.lucene.search.similarities.BM25Similarity;
import org.apache.lucene.store.FSDirectory;
import org.apache.lucene.util.BytesRef;

public final class LuceneBench {
    /* The string value of "key" in one JSON object line, or null. */
    static String field(String line, String key) {
        String pat = "\"" + key + "\"";
        int i = 0;
        while ((i = line.indexOf(pat, i)) >= 0) {
            int j = i + pat.length();
            while (j < line.length() && Character.isWhitespace(line.charAt(j))) j++;
            if (j < line.length() && line.charAt(j) == ':') {
                j++;
                while (j < line.length() && Character.isWhitespace(line.charAt(j))) j++;
                if (j < line.length() && line.charAt(j) == '"') return string(line, j + 1);
                return null;
            }
            i = j;
        }
        return null;
    }

    /* Decodes the JSON string starting after its opening quote at s[i]. */
    static String string(String s, int i) {
        StringBuilder b = new StringBuilder();
        while (i < s.length()) {
            char c = s.charAt(i++);
            if (c == '"') return b.toString();
            if (c != '\\') { b.append(c); continue; }
            char e = s.charAt(i++);
            switch (e) {
                case 'n': b.append('\n'); break;
                case 't': b.append('\t'); break;
                case 'r': b.append('\r'); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'u': b.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
                default: b.append(e);
            }
        }
        throw new IllegalArgumentException("unterminated JSON string");
    }

    static Analyzer analyzer() {
        return new EnglishAnalyzer();
    }

    static void index(String corpus, String dir) throws IOException {
        IndexWriterConfig cfg = new IndexWriterConfig(analyzer());
        cfg.setSimilarity(new BM25Similarity(0.9f, 0.4f));
        cfg.setOpenMode(IndexWriterConfig.OpenMode.CREATE);
        cfg.setRAMBufferSizeMB(256);
        int n = 0;
        try (IndexWriter w = new IndexWriter(FSDirectory.open(Paths.get(dir)), cfg);
             BufferedReader r = Files.newBufferedReader(Paths.get(corpus), StandardCharsets.UTF_8)) {
            String line;
            while ((line = r.readLine()) != null) {
                if (line.isBlank()) continue;
                String id = field(line, "_id"), title = field(line, "title"), text = field(line, "text");
                Document d = new Document();
                d.add(new StringField("id", id, Field.Store.YES));
                d.add(new SortedDocValuesField("id", new BytesRef(id)));
                d.add(new TextField("contents", (title == null ? "" : title) + " " + (text == null ? "" : text),
                                    Field.Store.NO));
                w.addDocument(d);
                n++;
            }
            w.forceMerge(1);
        }
        System.out.println("lucene indexed " + n + " documents");
    }

    /* Anserini's BagOfWordsQueryGenerator: analysed terms, boosted by count. */
    static Query query(Analyzer a, String text) throws IOException {
        Map<String, Integer> counts = new LinkedHashMap<>();
        try (TokenStream ts = a.tokenStream("contents", text)) {
            CharTermAttribute t = ts.addAttribute(CharTermAttribute.class);
            ts.reset();
            while (ts.incrementToken()) counts.merge(t.toString(), 1, Integer::sum);
            ts.end();
        }
        BooleanQuery.Builder b = new BooleanQuery.Builder();
        for (Map.Entry<String, Integer> e : counts.entrySet())
            b.add(new BoostQuery(new TermQuery(new Term("contents", e.getKey())), e.getValue()),
                  BooleanClause.Occur.SHOULD);
        return b.build();
    }

    static void search(String dir, String queries, int k, int rounds, String runOut) throws IOException {
        List<String> ids = new ArrayList<>(), texts = new ArrayList<>();
        for (String line : Files.readAllLines(Paths.get(queries), StandardCharsets.UTF_8)) {
            if (line.isBlank()) continue;
            ids.add(field(line, "_id"));
            texts.add(field(line, "text"));
        }
        Analyzer a = analyzer();
        try (DirectoryReader reader = DirectoryReader.open(FSDirectory.open(Paths.get(dir)))) {
            IndexSearcher s = new IndexSearcher(reader);
            if (reader.leaves().size() != 1) throw new IllegalStateException("index not merged to one segment");
            LeafReader leaf = reader.leaves().get(0).reader();
            s.setSimilarity(new BM25Similarity(0.9f, 0.4f));
            int n = texts.size();
            String[][] runIds = new String[n][];
            float[][] runScores = new float[n][];
            for (int warm = 0; warm < 3; warm++)
                for (int i = 0; i < n; i++) s.search(query(a, texts.get(i)), k);
            double[] qps = new double[rounds];
            double[] lat = new double[rounds * n];
            ThreadMXBean tm = ManagementFactory.getThreadMXBean();
            com.sun.management.OperatingSystemMXBean os =
                (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
            long cpu0 = tm.getCurrentThreadCpuTime(), pcpu0 = os.getProcessCpuTime();
            for (int r = 0; r < rounds; r++) {
                long t0 = System.nanoTime();
                for (int i = 0; i < n; i++) {
                    long q0 = System.nanoTime();
                    TopDocs td = s.search(query(a, texts.get(i)), k);
                    String[] di = new String[td.scoreDocs.length];
                    float[] ds = new float[td.scoreDocs.length];
                    /* a run file needs the ids: from doc values (one segment),
                     * cheaper than the stored field */
                    SortedDocValues dv = leaf.getSortedDocValues("id");
                    for (int j = 0; j < td.scoreDocs.length; j++) {
                        ScoreDoc sd = td.scoreDocs[j];
                        if (!dv.advanceExact(sd.doc)) throw new IllegalStateException("no id");
                        di[j] = dv.lookupOrd(dv.ordValue()).utf8ToString();
                        ds[j] = sd.score;
                    }
                    runIds[i] = di;
                    runScores[i] = ds;
                    lat[r * n + i] = (System.nanoTime() - q0) / 1e6;
                }
                qps[r] = n / ((System.nanoTime() - t0) / 1e9);
            }
            double cpuMs = (tm.getCurrentThreadCpuTime() - cpu0) / 1e6 / ((double) rounds * n);
            double pcpuMs = (os.getProcessCpuTime() - pcpu0) / 1e6 / ((double) rounds * n);
            Arrays.sort(qps);
            Arrays.sort(lat);
            try (PrintWriter w = new PrintWriter(Files.newBufferedWriter(Paths.get(runOut), StandardCharsets.UTF_8))) {
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < runIds[i].length; j++)
                        w.printf("%s Q0 %s %d %.6f lucene%n", ids.get(i), runIds[i][j], j + 1, runScores[i][j]);
            }
            System.out.printf("lucene qps=%.1f p50_ms=%.3f cpu_ms=%.4f process_cpu_ms=%.4f rounds=%d n=%d%n",
                              qps[rounds / 2], lat[lat.length / 2], cpuMs, pcpuMs, rounds, n);
        }
    }

    public static void main(String[] args) throws IOException {
        if (args.length == 3 && args[0].equals("index")) {
            index(args[1], args[2]);
        } else if (args.length == 6 && args[0].equals("search")) {
            search(args[1], args[2], Integer.parseInt(args[3]), Integer.parseInt(args[4]), args[5]);
        } else {
            System.err.println("usage: LuceneBench index CORPUS.jsonl DIR | search DIR QUERIES.jsonl K ROUNDS RUN_OUT");
            System.exit(2);
        }
    }
}
